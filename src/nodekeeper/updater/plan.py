"""What to fetch, if anything (pure): the rollout decision plus what the keeper adds.

``nodekeeper.version.decision.decide_update`` says which version the node should run
(Storj's order). On top of it the keeper:

- skips a version remembered as failed (probation failed, preflight failed, ...) until
  another version becomes the target (a newer one: the control plane never moves a
  target back): retrying a version that crashed would roll the node
  back and forth every cycle. That holds even for a raised minimum: a version known to
  crash is not better than staying below the minimum, and the report says so;
- requires a verifiable artifact for this platform (url, sha256, size). Storj's plain
  ``url`` has no hash, so a document without our ``artifacts`` announces nothing this
  keeper will install (NoArtifact, reported, never a blind download);
- expands ``{os}`` and ``{arch}`` in the artifact URL.

The failed-version memory is a frozenset of normalised versions that the state machine
persists; the helpers here keep it small and the comparisons version-aware.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from nodekeeper.version.decision import decide_update
from nodekeeper.version.schema import Announcement, Artifact
from nodekeeper.version.versions import normalize_version, parse_version

from .errors import NoArtifact


@dataclass(frozen=True)
class UpdatePlan:
    """Fetch ``artifact`` (its url already expanded) and install it as ``version``."""

    process: str
    version: str
    platform: str
    artifact: Artifact
    reason: str

    def to_json(self) -> dict[str, Any]:
        """Plain JSON for the update journal."""
        return {
            "process": self.process,
            "version": self.version,
            "platform": self.platform,
            "artifact": self.artifact.model_dump(),
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UpdatePlan:
        return cls(
            process=data["process"],
            version=data["version"],
            platform=data["platform"],
            artifact=Artifact.model_validate(data["artifact"]),
            reason=data["reason"],
        )


@dataclass(frozen=True)
class NoUpdate:
    """Stay on the current version. ``skipped_failed`` is set when the decision named a
    version that failed before (the state machine reports it once, not every cycle)."""

    reason: str
    skipped_failed: str | None = None


def expand_url(url: str, platform: str) -> str:
    """Substitute ``{os}`` and ``{arch}`` from a platform key like ``windows_amd64``."""
    os_name, _, arch = platform.partition("_")
    return url.replace("{os}", os_name).replace("{arch}", arch)


def plan_update(
    announcement: Announcement,
    process: str,
    current: str,
    node_id: bytes,
    platform: str,
    failed: Iterable[str] = (),
) -> UpdatePlan | NoUpdate:
    """Decide what to fetch for ``process`` now running ``current`` ("0.0.0" when nothing
    is installed yet). Raises NoArtifact when the target has no artifact for
    ``platform``; ValueError (InvalidVersionError) for a malformed ``current``."""
    entry = announcement.processes.get(process)
    if entry is None:
        return NoUpdate(f"the control plane announces nothing for {process}")
    decision = decide_update(current, entry, node_id)
    if decision.target is None:
        return NoUpdate(decision.reason)
    target = normalize_version(decision.target)
    if is_failed(target, failed):
        return NoUpdate(
            f"{process} {target} failed on this node before; waiting for a newer version "
            f"({decision.reason})",
            skipped_failed=target,
        )
    # The target is the suggested or the minimum version; both may carry artifacts.
    refs = [r for r in (entry.suggested, entry.minimum) if normalize_version(r.version) == target]
    artifact = next((r.artifacts[platform] for r in refs if platform in r.artifacts), None)
    if artifact is None:
        raise NoArtifact(
            f"{process} {target} is announced ({decision.reason}) but has no artifact with "
            f"sha256 and size for {platform}; not downloading what cannot be verified"
        )
    expanded = artifact.model_copy(update={"url": expand_url(artifact.url, platform)})
    return UpdatePlan(process, target, platform, expanded, decision.reason)


def is_failed(version: str, failed: Iterable[str]) -> bool:
    """Whether ``version`` is in the failed set (``v1.2.3`` and ``1.2.3`` are the same)."""
    wanted = parse_version(version)
    return any(parse_version(v) == wanted for v in failed)


def remember_failed(failed: Iterable[str], version: str) -> frozenset[str]:
    """The failed set with ``version`` added."""
    return frozenset({*(normalize_version(v) for v in failed), normalize_version(version)})


def forget_superseded(failed: Iterable[str], committed: str) -> frozenset[str]:
    """Drop failed versions at or below ``committed`` (a version that just passed
    probation): the keeper never goes back to them, so remembering them is noise."""
    floor = parse_version(committed)
    return frozenset(normalize_version(v) for v in failed if parse_version(v) > floor)
