"""The launcher's pure decisions, every branch."""

from __future__ import annotations

import itertools

import pytest

from nodekeeper.launcher import decide
from nodekeeper.launcher.decide import (
    KEEP_FAILED,
    KEEP_OUTCOMES,
    MAX_ATTEMPTS,
    Launch,
    Pending,
    State,
    Verdict,
)

NOW = 1_700_000_000.0


# -- boot --------------------------------------------------------------------------------


@pytest.mark.parametrize("current", [None, "1.0.0"])
def test_boot_without_pending_starts_current_without_probation(current: str | None) -> None:
    state = State(current=current, previous="0.9.0")
    assert decide.at_boot(state, NOW) == (state, Launch(current, probation=False))


# The installer (MSI upgrade) and the self-update both bring keepers: the newer wins,
# in either order (decision 066).
@pytest.mark.parametrize(
    ("runtime", "current", "pending", "expected"),
    [
        # An installer upgrade newer than the self-updated keeper: the runtime's runs.
        ("0.4.0", "0.3.0", None, Launch(None, probation=False)),
        ("0.10.0", "0.9.0", None, Launch(None, probation=False)),
        # The self-updated keeper is newer than (or as new as) the installed one: it stays.
        ("0.2.0", "0.3.0", None, Launch("0.3.0", probation=False)),
        ("0.3.0", "0.3.0", None, Launch("0.3.0", probation=False)),
        # No self-updated keeper: the runtime's, as always.
        ("0.2.0", None, None, Launch(None, probation=False)),
        # A newer keeper on probation keeps its probation; an older one gives way.
        ("0.4.0", "0.3.0", "0.5.0", Launch("0.5.0", probation=True)),
        ("0.4.0", "0.2.0", "0.3.0", Launch(None, probation=False)),
        # Not plain X.Y.Z: unsure, so nothing switches.
        ("0.4.0-rc.1", "0.3.0", None, Launch("0.3.0", probation=False)),
    ],
)
def test_the_newer_of_the_installed_and_the_self_updated_keeper_runs(
    runtime: str, current: str | None, pending: str | None, expected: Launch
) -> None:
    waiting = Pending(pending, 1) if pending else None
    state = State(current=current, previous="0.1.0", pending=waiting)
    new, launch = decide.at_boot(state, NOW, runtime)
    assert launch == expected
    if expected.version is None and current is not None:
        assert (new.current, new.previous, new.pending) == (None, current, None)


@pytest.mark.parametrize("attempts", range(MAX_ATTEMPTS))
def test_boot_with_pending_retries_its_probation_and_counts_it(attempts: int) -> None:
    state = State(current="1.0.0", pending=Pending("1.1.0", attempts))
    new, launch = decide.at_boot(state, NOW)
    assert launch == Launch("1.1.0", probation=True)
    assert new.pending == Pending("1.1.0", attempts + 1)
    assert (new.current, new.failed, new.outcomes) == ("1.0.0", (), ())


@pytest.mark.parametrize("attempts", [MAX_ATTEMPTS, MAX_ATTEMPTS + 3])
def test_boot_after_too_many_interrupted_probations_fails_the_version(attempts: int) -> None:
    state = State(current="1.0.0", previous="0.9.0", pending=Pending("1.1.0", attempts))
    new, launch = decide.at_boot(state, NOW)
    assert launch == Launch("1.0.0", probation=False)
    assert (new.current, new.previous, new.pending, new.failed) == (
        "1.0.0",
        "0.9.0",
        None,
        ("1.1.0",),
    )
    (o,) = new.outcomes
    assert (o.kind, o.version, o.running, o.reason, o.at) == (
        "rolled_back",
        "1.1.0",
        "1.0.0",
        "interrupted",
        NOW,
    )


# -- hand-over ---------------------------------------------------------------------------


def test_request_for_a_new_version_makes_it_pending_on_probation() -> None:
    state = State(current="1.0.0", failed=("0.5.0",))
    new, launch = decide.on_request(state, "1.1.0", NOW)
    assert launch == Launch("1.1.0", probation=True)
    assert new == State(current="1.0.0", pending=Pending("1.1.0", 1), failed=("0.5.0",))


def test_request_from_the_runtime_keeper_works_too() -> None:
    new, launch = decide.on_request(State(), "1.0.0", NOW)
    assert launch == Launch("1.0.0", probation=True) and new.pending == Pending("1.0.0", 1)


def test_no_readable_request_is_a_crash_not_a_hand_over() -> None:
    state = State(current="1.0.0")
    assert decide.on_request(state, None, NOW) == (state, Launch("1.0.0", probation=False))


@pytest.mark.parametrize(
    ("state", "version", "reason"),
    [
        (State(current="1.0.0", failed=("1.1.0",)), "1.1.0", "failed_before"),
        (State(current="1.0.0"), "1.0.0", "already_current"),
    ],
)
def test_refused_requests_restart_current_and_leave_a_record(
    state: State, version: str, reason: str
) -> None:
    new, launch = decide.on_request(state, version, NOW)
    assert launch == Launch("1.0.0", probation=False)
    assert new.pending is None and new.current == "1.0.0" and new.failed == state.failed
    (o,) = new.outcomes
    assert (o.kind, o.version, o.reason) == ("refused", version, reason)


# -- probation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alive", "answered", "elapsed", "expected"),
    [
        (False, False, 0.0, Verdict.EXITED),
        (False, True, 0.0, Verdict.EXITED),
        (False, True, 100.0, Verdict.EXITED),
        (False, False, 100.0, Verdict.EXITED),
        (True, False, 0.0, Verdict.WAIT),
        (True, True, 0.0, Verdict.WAIT),
        (True, True, 59.9, Verdict.WAIT),
        (True, False, 59.9, Verdict.WAIT),
        (True, True, 60.0, Verdict.COMMIT),
        (True, True, 600.0, Verdict.COMMIT),
        (True, False, 60.0, Verdict.NO_STATUS),
        (True, False, 600.0, Verdict.NO_STATUS),
    ],
)
def test_probation_verdict(alive: bool, answered: bool, elapsed: float, expected: Verdict) -> None:
    got = decide.probation_verdict(alive=alive, answered=answered, elapsed=elapsed, probation=60.0)
    assert got is expected


def test_commit_moves_pending_to_current_and_current_to_previous() -> None:
    state = State(current="1.0.0", previous="0.9.0", pending=Pending("1.1.0", 2), failed=("0.5.0",))
    new = decide.commit(state, NOW)
    assert (new.current, new.previous, new.pending, new.failed) == (
        "1.1.0",
        "1.0.0",
        None,
        ("0.5.0",),
    )
    (o,) = new.outcomes
    assert (o.kind, o.version, o.running, o.at) == ("committed", "1.1.0", "1.1.0", NOW)


def test_commit_from_the_runtime_keeper_leaves_it_as_previous() -> None:
    new = decide.commit(State(pending=Pending("1.0.0", 1)), NOW)
    assert (new.current, new.previous) == ("1.0.0", None)


def test_fall_back_keeps_current_and_remembers_the_failure() -> None:
    state = State(current="1.0.0", previous="0.9.0", pending=Pending("1.1.0", 1))
    new = decide.fall_back(state, "exited", "code 3", NOW)
    assert (new.current, new.previous, new.pending, new.failed) == (
        "1.0.0",
        "0.9.0",
        None,
        ("1.1.0",),
    )
    (o,) = new.outcomes
    assert (o.kind, o.version, o.running, o.reason, o.detail) == (
        "rolled_back",
        "1.1.0",
        "1.0.0",
        "exited",
        "code 3",
    )


@pytest.mark.parametrize("step", ["commit", "fall_back", "stopped"])
def test_steps_without_pending_change_nothing(step: str) -> None:
    state = State(current="1.0.0", previous="0.9.0")
    if step == "commit":
        assert decide.commit(state, NOW) is state
    elif step == "fall_back":
        assert decide.fall_back(state, "exited", "", NOW) is state
    else:
        assert decide.stopped_during_probation(state) is state


def test_a_stop_during_probation_does_not_count_as_an_attempt() -> None:
    state = State(current="1.0.0", pending=Pending("1.1.0", 1))
    stopped = decide.stopped_during_probation(state)
    assert stopped.pending == Pending("1.1.0", 0)
    # ... so the next boot has a full set of attempts left.
    assert decide.at_boot(stopped, NOW)[1] == Launch("1.1.0", probation=True)
    assert decide.stopped_during_probation(stopped).pending == Pending("1.1.0", 0)


def test_failed_list_is_bounded_and_has_no_duplicates() -> None:
    state = State(current="1.0.0")
    for i in range(KEEP_FAILED + 5):
        state = decide.fall_back(decide.on_request(state, f"2.0.{i}", NOW)[0], "exited", "", NOW)
    assert len(state.failed) == KEEP_FAILED and state.failed[-1] == f"2.0.{KEEP_FAILED + 4}"
    again = decide.fall_back(State(failed=("3.0.0",), pending=Pending("3.0.0", 1)), "x", "", NOW)
    assert again.failed == ("3.0.0",)


def test_outcomes_are_bounded_unique_and_pruned_once_delivered() -> None:
    state = State(current="1.0.0")
    for i in range(KEEP_OUTCOMES + 3):
        state = decide.on_request(state, "1.0.0", NOW + i)[0]  # a refusal each time
    assert len(state.outcomes) == KEEP_OUTCOMES
    assert len({o.id for o in state.outcomes}) == KEEP_OUTCOMES
    delivered = frozenset(o.id for o in state.outcomes[:5])
    pruned = decide.prune_delivered(state, delivered)
    assert pruned.outcomes == state.outcomes[5:]
    assert decide.prune_delivered(pruned, frozenset({"unknown"})) is pruned


# -- what can be started -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "first", "chain"),
    [
        (State(current="2.0.0", previous="1.0.0"), "2.0.0", ["2.0.0", "1.0.0", None]),
        (State(current="2.0.0"), "2.0.0", ["2.0.0", None]),
        (State(), None, [None]),
        (
            State(current="2.0.0", previous="1.0.0", pending=Pending("3.0.0", 1)),
            "3.0.0",
            ["3.0.0", "2.0.0", "1.0.0", None],
        ),
        # A failed version is tried only when asked for first (it was pending).
        (State(current="2.0.0", previous="1.0.0", failed=("1.0.0",)), "2.0.0", ["2.0.0", None]),
        (State(current="2.0.0", failed=("3.0.0",)), "3.0.0", ["3.0.0", "2.0.0", None]),
    ],
)
def test_launch_chain(state: State, first: str | None, chain: list[str | None]) -> None:
    assert decide.launch_chain(state, first) == chain


def test_unusable_pending_fails_its_probation() -> None:
    state = State(current="1.0.0", pending=Pending("1.1.0", 1))
    new = decide.demote_unusable(state, "1.1.0", "1.0.0", "no manifest", NOW)
    assert (new.current, new.pending, new.failed) == ("1.0.0", None, ("1.1.0",))
    assert new.outcomes[-1].reason == "unusable"


def test_unusable_current_is_replaced_by_what_started() -> None:
    state = State(current="2.0.0", previous="1.0.0")
    new = decide.demote_unusable(state, "2.0.0", "1.0.0", "gone", NOW)
    assert (new.current, new.previous, new.failed) == ("1.0.0", None, ())
    (o,) = new.outcomes
    assert (o.kind, o.version, o.running, o.reason) == ("rolled_back", "2.0.0", "1.0.0", "unusable")


def test_unusable_current_and_previous_end_on_the_runtime_keeper() -> None:
    state = State(current="2.0.0", previous="1.0.0")
    for bad in ("2.0.0", "1.0.0"):
        state = decide.demote_unusable(state, bad, None, "gone", NOW)
    assert (state.current, state.previous) == (None, None)
    assert len(state.outcomes) == 1  # one rollback record: current's


def test_unusable_version_that_is_neither_changes_nothing() -> None:
    state = State(current="2.0.0", previous="1.0.0")
    assert decide.demote_unusable(state, "9.9.9", "2.0.0", "x", NOW) is state
    assert decide.demote_unusable(state, None, "2.0.0", "x", NOW) is state


# -- restarts ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failures", "delay"),
    [(-1, 0.0), (0, 0.0), (1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0), (7, 60.0), (50, 60.0)],
)
def test_restart_delay(failures: int, delay: float) -> None:
    assert decide.restart_delay(failures, 1.0, 60.0) == delay


@pytest.mark.parametrize(
    ("failures", "ran", "after"),
    list(itertools.product([0, 1, 5], [0.0, 599.9, 600.0, 7200.0], [600.0])),
)
def test_failures_reset_after_a_healthy_run(failures: int, ran: float, after: float) -> None:
    expected = 0 if ran >= after else failures + 1
    assert decide.failures_after_exit(failures, ran, after) == expected
