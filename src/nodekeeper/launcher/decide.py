"""The launcher's decisions, as plain functions of plain data (no I/O, no clock).

What to start at boot, whether to take a hand-over, what probation concludes, what a
commit and a fallback do to the state, how long to wait after a crash. The loop in
``launcher.run`` only carries these out, so every branch is tested here exhaustively.

A version is a normalised SemVer string; ``None`` stands for the keeper that came with
the runtime (the installer's copy in site-packages), the floor that is always there.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Literal

# A power cut (or a kill -9 of the launcher) during probation restarts the probation
# once more; a second one marks the version failed, so a release that takes the machine
# down with it cannot keep doing so on every boot.
MAX_ATTEMPTS = 2
KEEP_FAILED = 20  # failed versions remembered; older ones were superseded long ago
KEEP_OUTCOMES = 20  # undelivered outcomes kept if the keeper never reads them

OutcomeKind = Literal["committed", "rolled_back", "refused"]


@dataclass(frozen=True)
class Pending:
    version: str
    attempts: int  # probations started for it, this one included


@dataclass(frozen=True)
class Outcome:
    """Something the running keeper should report (and index, if it is a failure)."""

    id: str
    kind: OutcomeKind
    version: str  # the version it is about
    running: str | None  # what runs afterwards (None: the runtime's keeper)
    reason: str  # committed: healthy; else exited, no_status, unusable, interrupted, ...
    detail: str
    at: float


@dataclass(frozen=True)
class State:
    current: str | None = None
    previous: str | None = None
    pending: Pending | None = None
    failed: tuple[str, ...] = ()
    outcomes: tuple[Outcome, ...] = ()


@dataclass(frozen=True)
class Launch:
    version: str | None
    probation: bool


def outcome(
    kind: OutcomeKind, version: str, running: str | None, reason: str, detail: str, at: float
) -> Outcome:
    # Time in microseconds plus what happened: unique for one launcher (it makes at most
    # one outcome per version per step) and readable in the file.
    return Outcome(f"{int(at * 1e6)}-{kind}-{version}", kind, version, running, reason, detail, at)


def _add_outcome(state: State, item: Outcome) -> State:
    return replace(state, outcomes=(*state.outcomes, item)[-KEEP_OUTCOMES:])


def _add_failed(failed: tuple[str, ...], version: str) -> tuple[str, ...]:
    return (*(v for v in failed if v != version), version)[-KEEP_FAILED:]


# -- boot ------------------------------------------------------------------------------


def newer(a: str, b: str | None) -> bool:
    """``a`` is a strictly higher X.Y.Z than ``b`` (None: nothing to compare: False).
    Versions that are not plain X.Y.Z (pre-releases) never win: unsure means no switch."""

    def numbers(version: str) -> tuple[int, ...] | None:
        parts = version.split(".")
        if len(parts) != 3 or not all(p.isdigit() for p in parts):
            return None
        return tuple(int(p) for p in parts)

    if b is None:
        return False
    left, right = numbers(a), numbers(b)
    return left is not None and right is not None and left > right


def at_boot(state: State, now: float, runtime_version: str | None = None) -> tuple[State, Launch]:
    """What to start when the launcher starts. A pending version means the last launcher
    stopped mid-probation (killed, power cut): try it again until MAX_ATTEMPTS.

    The installer and the self-update both bring keepers; the newer one wins, whichever
    way it came. ``runtime_version`` is the installed runtime's own keeper: when an
    installer upgrade made it newer than the self-updated current (and than a pending
    one), the runtime's keeper runs and the self-updated one becomes ``previous``. An
    older installer (a repair, a downgrade of the runtime alone) never replaces a newer
    self-updated keeper."""
    if runtime_version is not None and newer(runtime_version, state.current):
        pending = state.pending.version if state.pending else None
        if pending is None or newer(runtime_version, pending):
            state = replace(state, current=None, previous=state.current, pending=None)
            return state, Launch(None, probation=False)
    pending = state.pending
    if pending is None:
        return state, Launch(state.current, probation=False)
    if pending.attempts < MAX_ATTEMPTS:
        again = replace(pending, attempts=pending.attempts + 1)
        return replace(state, pending=again), Launch(pending.version, probation=True)
    failed = fall_back(
        state,
        "interrupted",
        f"probation was interrupted {pending.attempts} times (launcher stopped or power lost)",
        now,
    )
    return failed, Launch(failed.current, probation=False)


# -- hand-over ---------------------------------------------------------------------------


def on_request(state: State, version: str | None, now: float) -> tuple[State, Launch]:
    """The keeper exited with EXIT_SELF_UPDATE asking for ``version`` (None: no readable
    request, so it was a crash). Refusals start the current keeper again."""
    current = Launch(state.current, probation=False)
    if version is None:
        return state, current
    if version in state.failed:
        why = "it failed before; only a newer version is tried"
        return _add_outcome(
            state, outcome("refused", version, state.current, "failed_before", why, now)
        ), current
    if version == state.current:
        why = "it is the version running already"
        return _add_outcome(
            state, outcome("refused", version, state.current, "already_current", why, now)
        ), current
    return replace(state, pending=Pending(version, 1)), Launch(version, probation=True)


# -- probation ---------------------------------------------------------------------------


class Verdict(enum.Enum):
    WAIT = "wait"
    COMMIT = "commit"
    EXITED = "exited"  # the new keeper did not stay up
    NO_STATUS = "no_status"  # it stayed up but its status API never answered


def probation_verdict(*, alive: bool, answered: bool, elapsed: float, probation: float) -> Verdict:
    """Healthy = its status API answered at least once and it is still running when the
    probation ends. An exit at any point fails it, even after answering: a keeper that
    serves its API and then dies is not one to commit."""
    if not alive:
        return Verdict.EXITED
    if elapsed < probation:
        return Verdict.WAIT
    return Verdict.COMMIT if answered else Verdict.NO_STATUS


def commit(state: State, now: float) -> State:
    """pending → current, current → previous (the one to fall back to next time)."""
    if state.pending is None:
        return state
    version = state.pending.version
    done = State(
        current=version,
        previous=state.current,
        pending=None,
        failed=tuple(v for v in state.failed if v != version),
        outcomes=state.outcomes,
    )
    return _add_outcome(
        done, outcome("committed", version, version, "healthy", "passed probation", now)
    )


def fall_back(state: State, reason: str, detail: str, now: float) -> State:
    """Drop the pending version, remember it failed; current stays what it was."""
    if state.pending is None:
        return state
    version = state.pending.version
    out = replace(state, pending=None, failed=_add_failed(state.failed, version))
    return _add_outcome(out, outcome("rolled_back", version, state.current, reason, detail, now))


def stopped_during_probation(state: State) -> State:
    """An operator's stop is not the new version's fault: that attempt does not count."""
    if state.pending is None:
        return state
    attempts = max(0, state.pending.attempts - 1)
    return replace(state, pending=replace(state.pending, attempts=attempts))


# -- what can be started ---------------------------------------------------------------


def launch_chain(state: State, first: str | None) -> list[str | None]:
    """Versions to try, in order, when ``first`` cannot be started (missing or broken
    install): then current, previous, and last the runtime's own keeper, which is always
    there. Nothing failed is ever on the list after ``first``."""
    chain: list[str | None] = []
    for version in (first, state.current, state.previous, None):
        if version not in chain and (version == first or version not in state.failed):
            chain.append(version)
    return chain


def demote_unusable(
    state: State, version: str | None, started: str | None, detail: str, now: float
) -> State:
    """``version`` could not be started and ``started`` ran instead.

    A pending version that cannot start fails its probation. A committed one whose
    install broke (deleted, damaged) is replaced by what started: keeping a dead current
    would make the next commit put it in ``previous``, the one place it must not be.
    """
    if state.pending is not None and state.pending.version == version:
        return fall_back(state, "unusable", detail, now)
    if version is None or version != state.current:
        if version is not None and version == state.previous:
            return replace(state, previous=None)
        return state
    previous = state.previous if state.previous != started else None
    out = replace(state, current=started, previous=previous)
    return _add_outcome(out, outcome("rolled_back", version, started, "unusable", detail, now))


# -- restarts ----------------------------------------------------------------------------


def restart_delay(failures: int, initial: float, maximum: float) -> float:
    """Backoff after the keeper stopped on its own: 0 for the first exit after a healthy
    run (``failures`` = 0), then initial, doubling, capped at maximum."""
    if failures <= 0:
        return 0.0
    return min(maximum, initial * 2 ** (failures - 1))


def failures_after_exit(failures: int, ran_seconds: float, reset_after: float) -> int:
    """A keeper that ran for ``reset_after`` seconds had a healthy run: start counting
    again (systemd's and the supervisor's rule)."""
    return 0 if ran_seconds >= reset_after else failures + 1


def prune_delivered(state: State, delivered: frozenset[str]) -> State:
    """Forget outcomes the keeper has reported."""
    kept = tuple(o for o in state.outcomes if o.id not in delivered)
    return state if kept == state.outcomes else replace(state, outcomes=kept)
