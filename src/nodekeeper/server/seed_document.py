"""The announcement in the seed document's own form, served at ``GET /seed`` (issue 14).

The original design (`seed/000_...`, "Rollout message structure") describes the version
server's answer as::

    {"processes": {"storagenode": {
        "allowed_version_minimum": "0.3.4",
        "suggested_version": "0.5.1",
        "rollout": {"active": true, "target_version": "0.5.2",
                    "rollout_seed": "04123bacde", "rollout_cursor": "40"}}}}

with its rules: below the minimum, go to at least ``suggested_version`` unless part of
a rollout; in an active rollout, hash the node ID with the seed and, if it sorts below
the cursor, go to ``target_version``. A client written against that text must work, so
this form is built from the same snapshot, at the same instant, as ``/`` (pure: same
inputs, same bytes, on every replica). The mapping, and why:

- ``allowed_version_minimum``: the process's minimum, as in ``/``.
- ``suggested_version``: what a node that is *not* in the rollout should run: the
  rollout's target once the rollout is complete, else the newest of the last completed
  rollout's target and the minimum. (``/``'s Storj ``suggested`` is the rollout target,
  which the seed calls ``target_version``.)
- ``rollout.active``: a rollout exists and has not reached 100 % (a paused one is still
  active: its cursor stands still).
- ``rollout_seed``, ``rollout_cursor``: the same 32-byte seed and cursor as ``/``, in hex;
  the comparison is Storj's (HMAC-SHA256 keyed by the seed over the node ID, compared as
  a big-endian number, candidate when ``<=``). The seed's example cursor "40" reads like
  a percentage, but its rule compares a hash with it, so the hash-comparable form is
  served, and the percentage beside it as ``rollout_percent`` (our addition).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from nodekeeper.version.rollout import ZERO_CURSOR, percentage_to_cursor
from nodekeeper.version.versions import parse_version

from . import ramp
from .models import ProcessRecord, Snapshot


def _suggested(process: ProcessRecord, complete: bool) -> str:
    if complete and process.rollout is not None:
        return process.rollout.version
    candidates = [process.minimum]
    if process.last_completed is not None and process.last_completed in process.releases:
        candidates.append(process.last_completed)
    return max(candidates, key=parse_version)


def seed_process(process: ProcessRecord, at: float) -> dict[str, Any]:
    rollout = process.served_rollout  # an aborted rollout is not offered (decision 078)
    complete = rollout is not None and ramp.phase(rollout.ramp, at) == "complete"
    if rollout is None:
        described = {
            "active": False,
            "target_version": "",
            "rollout_seed": "",
            "rollout_cursor": ZERO_CURSOR.hex(),
            "rollout_percent": 0.0,
        }
    else:
        percent = ramp.percent_at(rollout.ramp, at)
        described = {
            "active": not complete,
            "target_version": rollout.version,
            "rollout_seed": rollout.seed,
            "rollout_cursor": percentage_to_cursor(percent).hex(),
            "rollout_percent": round(percent, 4),
        }
    return {
        "allowed_version_minimum": process.minimum,
        "suggested_version": _suggested(process, complete),
        "rollout": described,
    }


def build_seed_document(snapshot: Snapshot, at: float) -> dict[str, Any]:
    return {
        "processes": {
            name: seed_process(process, at) for name, process in sorted(snapshot.processes.items())
        }
    }


def render_seed(snapshot: Snapshot, at: float) -> tuple[bytes, str]:
    """The body and its strong ETag (a digest of the body, as for ``/``)."""
    body = json.dumps(
        build_seed_document(snapshot, at), sort_keys=True, separators=(",", ":")
    ).encode()
    return body, '"' + hashlib.sha256(body).hexdigest()[:40] + '"'
