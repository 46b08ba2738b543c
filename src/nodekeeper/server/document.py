"""Builds the announcement document served at ``/`` from a store snapshot.

Pure: the same snapshot, time and public URL give the same bytes, which is what lets
several replicas over one database serve identical documents and ETags.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from nodekeeper.version.rollout import ZERO_CURSOR, percentage_to_cursor

from . import ramp
from .models import ArtifactRecord, ProcessRecord, Snapshot


@dataclass(frozen=True)
class RenderedDocument:
    body: bytes
    etag: str  # strong: a quoted digest of the body
    generation: int
    evaluated_at: float
    moving: bool  # a rollout is ramping, so the body changes with time
    snapshot: Snapshot  # what it was rendered from; the URL endpoints answer from it too


def etag_matches(if_none_match: bytes, etag: bytes) -> bool:
    """Whether an ``If-None-Match`` header names ``etag`` (weak or strong, or ``*``)."""
    if if_none_match.strip() == b"*":
        return True
    return any(t.strip().removeprefix(b"W/") == etag for t in if_none_match.split(b","))


def is_moving(snapshot: Snapshot, at: float) -> bool:
    return any(
        p.served_rollout is not None and ramp.phase(p.served_rollout.ramp, at) == "running"
        for p in snapshot.processes.values()
    )


def artifact_url(artifact: ArtifactRecord, public_url: str) -> str:
    if artifact.stored_name is not None:
        return f"{public_url}/artifacts/{artifact.stored_name}"
    assert artifact.url is not None
    return artifact.url


def download_template(public_url: str, process: str, version: str) -> str:
    """Storj's ``url`` key: clients substitute ``{os}`` and ``{arch}``; we redirect."""
    return f"{public_url}/download/{process}/{version}/{{os}}/{{arch}}"


def _version_ref(process: ProcessRecord, version: str, public_url: str) -> dict[str, Any]:
    release = process.releases[version]
    return {
        "version": version,
        "url": download_template(public_url, process.name, version),
        "artifacts": {
            platform: {
                "url": artifact_url(a, public_url),
                "sha256": a.sha256,
                "size": a.size,
            }
            for platform, a in sorted(release.artifacts.items())
        },
    }


def _rollout(process: ProcessRecord, at: float) -> dict[str, Any]:
    # An aborted rollout is served as none at all (decision 078): a zero cursor under its
    # seed would say the same to nodes below it, but a seed still names a rollout.
    rollout = process.served_rollout
    if rollout is None:
        return {"seed": "", "cursor": ZERO_CURSOR.hex()}
    state = rollout.ramp
    percent = ramp.percent_at(state, at)
    # Our addition beside Storj's keys (optional for clients): how fast the ramp moves, so
    # a node can tell its operator when the rollout will reach it; null when it does not
    # move on its own (paused, set by hand, complete).
    rate = state.rate_per_day if ramp.phase(state, at) == "running" else None
    return {
        "seed": rollout.seed,
        "cursor": percentage_to_cursor(percent).hex(),
        "rate_per_day": rate or None,
    }


def build_document(snapshot: Snapshot, at: float, public_url: str) -> dict[str, Any]:
    processes = {}
    for name, process in sorted(snapshot.processes.items()):
        processes[name] = {
            "minimum": _version_ref(process, process.minimum, public_url),
            "suggested": _version_ref(process, process.suggested, public_url),
            "rollout": _rollout(process, at),
        }
    return {"processes": processes}


def render(snapshot: Snapshot, at: float, public_url: str) -> RenderedDocument:
    body = json.dumps(
        build_document(snapshot, at, public_url), sort_keys=True, separators=(",", ":")
    ).encode()
    etag = '"' + hashlib.sha256(body).hexdigest()[:40] + '"'
    return RenderedDocument(
        body=body,
        etag=etag,
        generation=snapshot.generation,
        evaluated_at=at,
        moving=is_moving(snapshot, at),
        snapshot=snapshot,
    )
