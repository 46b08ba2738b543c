"""What to fetch, if anything (pure): the rollout decision plus what the keeper adds.

``nodekeeper.version.decision`` says which version the node should run (Storj's order,
deciding around versions that are unusable here). This module says which are unusable:

- a version remembered as failed (probation failed, preflight failed, ...) is not tried
  again until another version becomes the target (a newer one: the control plane never
  moves a target back): retrying a version that crashed would roll the node back and
  forth every cycle;
- a version without a verifiable artifact for this platform (url, sha256, size). Storj's
  plain ``url`` has no hash, so a document without our ``artifacts`` announces nothing
  this keeper will install (NoArtifact, reported, never a blind download).

Below the minimum, an unusable minimum gives way to the suggested version (the node gets
no traffic below the minimum, so the rollout is not waited for); elsewhere an unusable
target means staying put. It also expands ``{os}`` and ``{arch}`` in the artifact URL.

The failed-version memory is a frozenset of normalised versions that the state machine
persists; the helpers here keep it small and the comparisons version-aware.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from nodekeeper.version.decision import UpdateDecision, decide_update
from nodekeeper.version.schema import Announcement, Artifact, ProcessAnnouncement
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
    # The decision's code (``version.decision``), for the status; not journaled.
    code: str = field(default="", compare=False)

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


FAILED_BEFORE = "failed on this node before"


@dataclass(frozen=True)
class NoUpdate:
    """Stay on the current version. ``skipped_failed`` is set when the decision named a
    version that failed before (the state machine reports it once, not every cycle)."""

    reason: str
    skipped_failed: str | None = None
    decision: UpdateDecision | None = None


def expand_url(url: str, platform: str) -> str:
    """Substitute ``{os}`` and ``{arch}`` from a platform key like ``windows_amd64``."""
    os_name, _, arch = platform.partition("_")
    return url.replace("{os}", os_name).replace("{arch}", arch)


def no_artifact_why(platform: str) -> str:
    return f"has no artifact with sha256 and size for {platform}"


def unusable_versions(
    entry: ProcessAnnouncement, platform: str, failed: Iterable[str]
) -> dict[str, str]:
    """Announced versions this node cannot install, each with why (pure)."""
    unusable: dict[str, str] = {}
    announced = (entry.minimum.version, entry.suggested.version)
    for version in {normalize_version(v) for v in announced}:
        if is_failed(version, failed):
            unusable[version] = FAILED_BEFORE
        elif _artifact(entry, version, platform) is None:
            unusable[version] = no_artifact_why(platform)
    return unusable


def _artifact(entry: ProcessAnnouncement, version: str, platform: str) -> Artifact | None:
    # minimum and suggested may name the same version; either entry may carry artifacts.
    refs = [r for r in (entry.minimum, entry.suggested) if normalize_version(r.version) == version]
    return next((r.artifacts[platform] for r in refs if platform in r.artifacts), None)


def plan_update(
    announcement: Announcement,
    process: str,
    current: str,
    node_id: bytes,
    platform: str,
    failed: Iterable[str] = (),
) -> UpdatePlan | NoUpdate:
    """Decide what to fetch for ``process`` now running ``current`` ("0.0.0" when nothing
    is installed yet). Raises NoArtifact when the version the decision settles on has no
    artifact for ``platform`` (and nothing else announced can be installed instead);
    ValueError (InvalidVersionError) for a malformed ``current``."""
    entry = announcement.processes.get(process)
    if entry is None:
        return NoUpdate(f"the control plane announces nothing for {process}")
    unusable = unusable_versions(entry, platform, failed)
    decision = decide_update(current, entry, node_id, unusable)
    if decision.target is None:
        skipped = decision.skipped
        if skipped is not None and unusable[skipped] != FAILED_BEFORE:
            raise NoArtifact(
                f"{process} {skipped} is announced ({decision.reason}) but has no artifact "
                f"with sha256 and size for {platform}; not downloading what cannot be verified"
            )
        return NoUpdate(decision.reason, skipped_failed=skipped, decision=decision)
    target = normalize_version(decision.target)
    artifact = _artifact(entry, target, platform)
    assert artifact is not None  # unusable_versions excluded targets without one
    expanded = artifact.model_copy(update={"url": expand_url(artifact.url, platform)})
    return UpdatePlan(process, target, platform, expanded, decision.reason, decision.code)


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
