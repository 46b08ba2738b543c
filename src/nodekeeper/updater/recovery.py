"""What to do with the journal on keeper start (pure): finish or undo the step in flight.

The node must end up running a verified version within one cycle, and nothing partial
is ever executed. Only a complete install directory (``versions/<proc>/<ver>``, created
by a rename after unpack and verified before it) is ever started, and the decision
below only names versions the caller found installed.

The action for each step in flight is the ``after_crash`` column of the one step table,
``steps.STEPS`` (its docstring renders the whole table); this module adds the versions:
which installed version to run, and the state to write before running it. With no step
in flight the node runs ``current``; a step past the switch whose new version is no
longer installed is abandoned like a pre-switch one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from nodekeeper.version.versions import InvalidVersionError, parse_version

from .state import Step, UpdateState, abandon
from .steps import STEPS, Action

__all__ = ["Action", "Recovery", "plan_recovery", "state_from_disk"]


@dataclass(frozen=True)
class Recovery:
    action: Action
    run_version: str | None  # start the node with this version (None: nothing to run)
    state: UpdateState  # write this before starting anything
    note: str  # one line for the keeper log


def plan_recovery(state: UpdateState, installed: Iterable[str]) -> Recovery:
    """Decide the start-up action for ``state`` given the versions installed on disk."""
    have = frozenset(installed)
    inflight = state.inflight
    if inflight is None:
        run = _first_installed((state.current, state.previous), have)
        note = "no update was in flight"
        if run != state.current:
            note = f"the committed version {state.current} is not installed; running {run}"
        return Recovery(Action.NOTHING, run, state, note)
    step = inflight.step
    action = STEPS[step].after_crash
    if action is Action.ABANDON:
        run = _first_installed((state.current, state.previous), have)
        return Recovery(
            Action.ABANDON,
            run,
            abandon(state),
            f"the update to {inflight.target} stopped during {step.value}; the node never "
            f"left {state.current or 'nothing'}; the next cycle resumes the update",
        )
    if action is Action.FINISH_ROLLBACK:
        run = _first_installed((inflight.from_version, state.current, state.previous), have)
        return Recovery(
            Action.FINISH_ROLLBACK,
            run,
            state,
            f"the rollback from {inflight.target} was interrupted; finishing it",
        )
    if inflight.target not in have:
        # Cannot happen unless someone deleted the install: the switch comes only after
        # unpack and preflight. Go back to the old version as a rollback would.
        run = _first_installed((inflight.from_version, state.current, state.previous), have)
        return Recovery(
            Action.ABANDON,
            run,
            abandon(state),
            f"{inflight.target} is no longer installed; running {run or 'nothing'}",
        )
    if action is Action.RESUME_PROBATION:
        # Probation restarts from zero: the time before the crash is not evidence.
        return Recovery(
            Action.RESUME_PROBATION,
            inflight.target,
            replace(state, inflight=replace(inflight, step=Step.PROBATION)),
            f"the update to {inflight.target} stopped during {step.value}; running it and "
            "starting its probation again",
        )
    return Recovery(
        action,
        inflight.target,
        state,
        f"the update to {inflight.target} stopped during {step.value}; finishing it",
    )


def _first_installed(candidates: Iterable[str | None], have: frozenset[str]) -> str | None:
    for version in candidates:
        if version and version in have:
            return version
    return None


def state_from_disk(process: str, installed: Iterable[str]) -> UpdateState:
    """A state for a keeper whose journal is gone or unreadable: the newest installed
    version is current and the one below it previous. Every install directory is
    complete (renamed into place after verification), so either is safe to run; the
    next cycle brings the node to the announced version."""
    versions = sorted(_valid(installed), key=parse_version, reverse=True)
    return UpdateState(
        process=process,
        current=versions[0] if versions else None,
        previous=versions[1] if len(versions) > 1 else None,
    )


def _valid(names: Iterable[str]) -> list[str]:
    out = []
    for name in names:
        try:
            parse_version(name)
        except (InvalidVersionError, ValueError):
            continue
        out.append(name)
    return out
