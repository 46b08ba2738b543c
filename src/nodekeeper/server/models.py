"""Plain records read from the store; the document builder and the policy use them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nodekeeper.version.versions import parse_version

from .ramp import RampState
from .rollout_plan import Plan


@dataclass(frozen=True)
class ArtifactRecord:
    platform: str  # "os_arch"
    sha256: str
    size: int
    url: str | None = None  # remote artifacts
    stored_name: str | None = None  # artifacts kept in our own store


@dataclass(frozen=True)
class ReleaseRecord:
    process: str
    version: str
    created_at: float
    artifacts: dict[str, ArtifactRecord] = field(default_factory=dict)


@dataclass(frozen=True)
class PauseRecord:
    """Why a rollout is paused: by the health check ("auto") or the operator. ``detail``
    holds the verdict's ``numbers`` and the deciding ``reports`` (an auto-pause only)."""

    by: str  # "auto" | "operator"
    at: float
    why: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RolloutRecord:
    id: int
    process: str
    version: str
    seed: str
    ramp: RampState
    started_at: float
    pause: PauseRecord | None = None
    aborted_at: float | None = None  # the operator aborted it: cursor 0, not served
    plan: Plan | None = None  # a staged plan (decision 079); None: a rate or by hand
    stage: int | None = None  # index into plan.stages
    stage_since: float | None = None
    # Failures received before this instant are not held against the release any more:
    # the operator resumed after seeing them (decision 078).
    forgive_before: float | None = None
    health: dict[str, Any] | None = None  # the latest judgement, any replica's

    @property
    def aborted(self) -> bool:
        return self.aborted_at is not None


@dataclass(frozen=True)
class ProcessRecord:
    name: str
    explicit_minimum: str | None
    releases: dict[str, ReleaseRecord]  # by version
    rollout: RolloutRecord | None
    last_completed: str | None  # the target of the newest rollout that reached 100 %

    def sorted_versions(self) -> list[str]:
        return sorted(self.releases, key=parse_version)

    @property
    def minimum(self) -> str:
        """The explicit minimum, or the oldest release when none was set."""
        return self.explicit_minimum or self.sorted_versions()[0]

    @property
    def served_rollout(self) -> RolloutRecord | None:
        """The rollout the announcement offers: an aborted one is not offered any more."""
        if self.rollout is None or self.rollout.aborted:
            return None
        return self.rollout

    @property
    def fleet_version(self) -> str:
        """What the fleet runs when no rollout is under way: the newest of the last
        completed rollout's target and the minimum (the health check's baseline)."""
        candidates = [self.minimum]
        if self.last_completed is not None and self.last_completed in self.releases:
            candidates.append(self.last_completed)
        return max(candidates, key=parse_version)

    @property
    def suggested(self) -> str:
        """What the document serves as Storj's ``suggested``: the rollout target; after
        an abort, the fleet's version (nodes on the aborted one never go back: 078)."""
        if self.rollout is None:
            return self.minimum
        if self.rollout.aborted:
            return self.fleet_version
        return self.rollout.version


@dataclass(frozen=True)
class Snapshot:
    generation: int
    processes: dict[str, ProcessRecord]
