"""The updater's durable state: what is committed, what failed, and the step in flight.

One value, ``UpdateState``, is the whole content of ``state/update.json`` (``journal``
writes it). Every change is a new value made by the pure functions here, so the
transitions can be tested without a disk, and the journal is always written with a
complete, consistent state (never "the step moved but the versions did not").

- ``current``: the committed version (None: nothing installed yet, which counts as
  0.0.0 for the rollout decision). With no step in flight, the node runs it.
- ``previous``: the version before ``current``: the rollback target, and kept on disk.
- ``failed``: versions that failed here; not tried again until a newer one is announced.
- ``held``: set when a failed update ran a migration, so the old binary cannot read the
  database: the node stays on the new version (``current``) and the status says so.
- ``inflight``: the step being carried out, written before its side effects.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from nodekeeper.version.versions import normalize_version

from .plan import UpdatePlan, forget_superseded, remember_failed

FORMAT = 1


class Step(StrEnum):
    """The in-flight steps, in order. ``check`` has no side effect and is not journaled;
    commit, rollback and hold are journaled too, because each has side effects (a
    switch, a report) that must be finished after a crash."""

    DOWNLOAD = "download"
    VERIFY = "verify"
    UNPACK = "unpack"
    PREFLIGHT = "preflight"
    SWITCH = "switch"
    PROBATION = "probation"
    COMMIT = "commit"
    ROLLBACK = "rollback"
    HOLD = "hold"


# Before SWITCH the old node is untouched: a crash there is undone by cleaning up.
PRE_SWITCH = frozenset({Step.DOWNLOAD, Step.VERIFY, Step.UNPACK, Step.PREFLIGHT})
# From SWITCH on, the new version may have run (and migrated the database).
NEW_MAY_HAVE_RUN = frozenset({Step.SWITCH, Step.PROBATION, Step.COMMIT, Step.HOLD})


@dataclass(frozen=True)
class Failure:
    """Why a new version failed its probation (for the rollback/hold step and reports)."""

    kind: str  # report kind: update_failed, out_of_space, held_after_migration, ...
    message: str
    # A failure of the machine, not of the version (out of space): retried next cycle.
    transient: bool = False
    schema_before: int | None = None
    schema_after: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "message": self.message,
            "transient": self.transient,
            "schema_before": self.schema_before,
            "schema_after": self.schema_after,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Failure:
        return cls(
            kind=str(data["kind"]),
            message=str(data["message"]),
            transient=bool(data.get("transient", False)),
            schema_before=data.get("schema_before"),
            schema_after=data.get("schema_after"),
        )


@dataclass(frozen=True)
class InFlight:
    step: Step
    plan: UpdatePlan
    from_version: str | None  # what ran before the switch (the rollback target)
    schema_before: int | None = None  # the old node's pulse schema_version at the switch
    # The old node was running healthy at the switch: an exit 78 of the new one is then
    # its own fault, not a node nobody has set up yet.
    old_healthy: bool = False
    started_at: float = 0.0
    failure: Failure | None = None  # set for ROLLBACK and HOLD

    @property
    def target(self) -> str:
        return self.plan.version

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step.value,
            "plan": self.plan.to_json(),
            "from_version": self.from_version,
            "schema_before": self.schema_before,
            "old_healthy": self.old_healthy,
            "started_at": self.started_at,
            "failure": self.failure.to_json() if self.failure else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InFlight:
        failure = data.get("failure")
        return cls(
            step=Step(data["step"]),
            plan=UpdatePlan.from_json(data["plan"]),
            from_version=data.get("from_version"),
            schema_before=data.get("schema_before"),
            old_healthy=bool(data.get("old_healthy", False)),
            started_at=float(data.get("started_at", 0.0)),
            failure=Failure.from_json(failure) if failure else None,
        )


@dataclass(frozen=True)
class Hold:
    """The node stays on ``version`` although it failed: a migration ran."""

    version: str
    from_version: str | None
    message: str
    since: float

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "from_version": self.from_version,
            "message": self.message,
            "since": self.since,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Hold:
        return cls(
            version=str(data["version"]),
            from_version=data.get("from_version"),
            message=str(data.get("message", "")),
            since=float(data.get("since", 0.0)),
        )


@dataclass(frozen=True)
class UpdateState:
    process: str
    current: str | None = None
    previous: str | None = None
    failed: frozenset[str] = field(default_factory=frozenset)
    held: Hold | None = None
    inflight: InFlight | None = None

    # -- derived ------------------------------------------------------------------------

    @property
    def current_or_zero(self) -> str:
        """What the rollout decision compares against: nothing installed is 0.0.0, so
        the minimum (or a rollout) installs a first version."""
        return self.current or "0.0.0"

    def running_version(self) -> str | None:
        """The version the node should run right now, given the step in flight."""
        if self.inflight is not None and self.inflight.step in NEW_MAY_HAVE_RUN:
            return self.inflight.target
        return self.current

    def keep(self) -> frozenset[str]:
        """Installed versions that must not be deleted now."""
        keep = {v for v in (self.current, self.previous) if v}
        if self.inflight is not None:
            keep.add(self.inflight.target)
            if self.inflight.from_version:
                keep.add(self.inflight.from_version)
        return frozenset(keep)

    # -- JSON ---------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "process": self.process,
            "current": self.current,
            "previous": self.previous,
            "failed": sorted(self.failed),
            "held": self.held.to_json() if self.held else None,
            "inflight": self.inflight.to_json() if self.inflight else None,
        }

    @classmethod
    def from_json(cls, data: Any) -> UpdateState:
        if not isinstance(data, dict):
            raise ValueError("the update state must be a JSON object")
        if data.get("format") != FORMAT:
            raise ValueError(f"unknown update state format {data.get('format')!r}")
        held, inflight = data.get("held"), data.get("inflight")
        return cls(
            process=str(data["process"]),
            current=_version_or_none(data.get("current")),
            previous=_version_or_none(data.get("previous")),
            failed=frozenset(normalize_version(v) for v in data.get("failed", [])),
            held=Hold.from_json(held) if held else None,
            inflight=InFlight.from_json(inflight) if inflight else None,
        )


def _version_or_none(value: Any) -> str | None:
    return normalize_version(str(value)) if value else None


# -- transitions (pure) ------------------------------------------------------------------


def begin(state: UpdateState, plan: UpdatePlan, now: float) -> UpdateState:
    """Start an update to ``plan`` at its first step (download)."""
    inflight = InFlight(Step.DOWNLOAD, plan, state.current, started_at=now)
    return replace(state, inflight=inflight)


def advance(state: UpdateState, step: Step, **changes: Any) -> UpdateState:
    """Move the in-flight update to ``step`` (optionally setting schema_before/failure)."""
    assert state.inflight is not None, "no update in flight"
    return replace(state, inflight=replace(state.inflight, step=step, **changes))


def abandon(state: UpdateState) -> UpdateState:
    """Drop the in-flight update before its switch: the node never left ``current``."""
    return replace(state, inflight=None)


def fail_before_switch(state: UpdateState, remember: bool) -> UpdateState:
    """The update failed before the switch (e.g. preflight); ``remember`` marks the
    version failed (a broken release) rather than retrying it next cycle (a network or
    disk problem)."""
    assert state.inflight is not None
    failed = remember_failed(state.failed, state.inflight.target) if remember else state.failed
    return replace(state, inflight=None, failed=failed)


def committed(state: UpdateState) -> UpdateState:
    """Probation passed: the new version is current, the old one previous."""
    assert state.inflight is not None
    target = state.inflight.target
    previous = state.inflight.from_version
    return replace(
        state,
        current=target,
        previous=previous if previous != target else state.previous,
        failed=forget_superseded(state.failed, target),
        held=None,
        inflight=None,
    )


def rolled_back(state: UpdateState) -> UpdateState:
    """Back on ``current`` (never changed during the update); the target is remembered
    as failed unless the failure was the machine's (transient)."""
    assert state.inflight is not None
    failure = state.inflight.failure
    remember = failure is None or not failure.transient
    return fail_before_switch(state, remember)


def held(state: UpdateState, now: float) -> UpdateState:
    """Stay on the failed new version: its migration ran and the old one cannot read
    the database. It becomes current (that is what runs), the old one previous."""
    assert state.inflight is not None
    inflight = state.inflight
    message = inflight.failure.message if inflight.failure else "failed after a migration"
    return replace(
        state,
        current=inflight.target,
        previous=inflight.from_version or state.previous,
        failed=remember_failed(state.failed, inflight.target),
        held=Hold(inflight.target, inflight.from_version, message, now),
        inflight=None,
    )
