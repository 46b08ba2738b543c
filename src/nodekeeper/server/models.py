"""Plain records read from the store; the document builder and the policy use them."""

from __future__ import annotations

from dataclasses import dataclass, field

from nodekeeper.version.versions import parse_version

from .ramp import RampState


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
class RolloutRecord:
    id: int
    process: str
    version: str
    seed: str
    ramp: RampState
    started_at: float


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
    def suggested(self) -> str:
        """What the document serves as Storj's ``suggested``: the rollout target."""
        return self.rollout.version if self.rollout else self.minimum


@dataclass(frozen=True)
class Snapshot:
    generation: int
    processes: dict[str, ProcessRecord]
