"""Rules an admin change must satisfy, as pure checks over the current state."""

from __future__ import annotations

from nodekeeper.version.versions import parse_version

from .errors import ConflictError, InvalidRequestError, NotFoundError
from .models import ProcessRecord


def require_process(processes: dict[str, ProcessRecord], name: str) -> ProcessRecord:
    if name not in processes:
        known = ", ".join(sorted(processes)) or "none yet"
        raise NotFoundError(
            f"unknown process {name!r} (known: {known}); publish a release of it first "
            "with `nodekeeper release publish`"
        )
    return processes[name]


def require_release(process: ProcessRecord, version: str) -> None:
    if version not in process.releases:
        known = ", ".join(process.sorted_versions())
        raise NotFoundError(
            f"{process.name} {version} is not published (published: {known}); "
            f"publish it with `nodekeeper release publish {process.name} {version} ...`"
        )


def check_new_release(process: ProcessRecord | None, version: str) -> None:
    if process is not None and version in process.releases:
        raise ConflictError(
            f"{process.name} {version} is already published and releases are immutable; "
            "publish the change as a new version"
        )


def check_minimum(process: ProcessRecord, version: str) -> None:
    require_release(process, version)
    served = process.served_rollout
    if served and parse_version(version) > parse_version(served.version):
        raise ConflictError(
            f"minimum {version} would be newer than the version being rolled out "
            f"({served.version}); start a rollout of {version} or newer first"
        )


def check_rollout_target(process: ProcessRecord, version: str) -> None:
    require_release(process, version)
    target = parse_version(version)
    if target < parse_version(process.minimum):
        raise InvalidRequestError(
            f"{version} is below the minimum {process.minimum}: nodes below the minimum "
            "already update to it; roll out a version at or above the minimum"
        )
    current = process.rollout
    if current is None:
        return
    if current.version == version and not current.aborted:
        raise ConflictError(
            f"{version} is already being rolled out; use `rollout set`, `pause` or `resume`"
        )
    if target < parse_version(current.version):
        raise ConflictError(
            f"{version} is older than the current rollout target {current.version}: nodes "
            "never downgrade, so nodes already on it would stay; publish the fix as a "
            "newer version"
        )


def check_percent(percent: float) -> None:
    if not 0 <= percent <= 100:  # NaN fails too
        raise InvalidRequestError(f"percent must be between 0 and 100, got {percent}")


def check_rate(rate: float | None) -> None:
    if rate is not None and not 0 < rate <= 10_000:
        raise InvalidRequestError(
            f"rate must be more than 0 and at most 10000 percent per day, got {rate}"
        )


def require_rollout(process: ProcessRecord):
    if process.rollout is None:
        raise ConflictError(
            f"{process.name} has no rollout; start one with "
            f"`nodekeeper rollout start {process.name} VERSION --rate PCT_PER_DAY`"
        )
    if process.rollout.aborted:
        raise ConflictError(
            f"the rollout of {process.name} {process.rollout.version} was aborted; start a "
            f"new one with `nodekeeper rollout start {process.name} VERSION`"
        )
    return process.rollout


def check_plan_or_rate(rate: float | None, staged: bool) -> None:
    if staged and rate is not None:
        raise InvalidRequestError(
            "give either rate_per_day (a linear ramp) or stages/doubling (a staged plan), not both"
        )


def publish_notes(before: ProcessRecord | None, process: str, version: str) -> list[str]:
    """What publishing ``version`` does that an operator may not expect."""
    if before is None:
        return [
            f"{version} is the first release of {process}, so it is the minimum: every node "
            "installs it now, without a rollout; stage later versions with `rollout start`"
            " (or publish an older baseline first and `minimum set` it)"
        ]
    return []


def rollout_notes(process: ProcessRecord, version: str) -> list[str]:
    """A rollout of the minimum itself stages nothing: every node goes there anyway."""
    if version == process.minimum:
        return [
            f"{process.name} {version} is the minimum, which every node installs whatever "
            "the rollout says, so the rollout's --rate has no effect; rollouts stage "
            "versions above the minimum"
        ]
    return []
