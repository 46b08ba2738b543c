"""Which notifications the tray raises: every condition, the debounce per kind (one
notification for a crash loop, again after it cleared, never twice within the gap,
again when it lasts), the keeper and control plane unreachable for long."""

from __future__ import annotations

from typing import Any

import pytest

from nodekeeper.tray.notify_rules import (
    Notice,
    NotifyPolicy,
    NotifyState,
    conditions,
    decide,
    disk_usage,
    problem_conditions,
)
from nodekeeper.tray.unread import Problem

POLICY = NotifyPolicy(
    min_gap_seconds=300,
    repeat_seconds=3600,
    control_plane_after_seconds=1800,
    keeper_after_seconds=120,
    disk_full_fraction=0.9,
)
T0 = 1_700_000_000.0


def running(**changes: Any) -> dict[str, Any]:
    status: dict[str, Any] = {
        "state": "running",
        "crash_loop": False,
        "recent_failures": 0,
        "next_start_in": None,
        "last_pulse": {"ok": True, "data": {"used_bytes": 10, "allocated_bytes": 100}},
        "update": {
            "held": None,
            "last_failure": None,
            "last_outcome": None,
            "unreachable_since": None,
            "server": "https://updates.example",
        },
        "firewall": {"last": {"status": "allowed", "port": 28967}},
        "hold": None,
    }
    for key, value in changes.items():
        if key == "update":
            status["update"] = {**status["update"], **value}
        else:
            status[key] = value
    return status


def kinds(status: dict[str, Any] | None, now: float = T0, state: NotifyState | None = None):
    return set(conditions(status, now, state or NotifyState(), POLICY))


def problem(ts: float, level: str = "ERROR", source: str = "node", fix: str = "") -> Problem:
    return Problem(ts, "", source, level, f"failure at {ts}", fix)


# -- conditions, one by one ----------------------------------------------------------------


def test_a_healthy_node_raises_nothing() -> None:
    assert kinds(running()) == set()


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (running(crash_loop=True, recent_failures=5), "crash-loop"),
        (running(state="crash-loop"), "crash-loop"),
        (running(update={"held": {"version": "1.2.0", "message": "rolled back"}}), "update-held"),
        (running(update={"last_failure": {"at": T0 - 10, "message": "hash mismatch"}}),
         "update-failed"),
        (running(firewall={"last": {"status": "blocked", "port": 28967, "fix": ["ufw allow"]}}),
         "firewall-blocked"),
        (running(last_pulse={"ok": True, "data": {"used_bytes": 90, "allocated_bytes": 100}}),
         "disk-full"),
        (running(state="stopped", hold={"reason": "storage gone", "since": T0, "fix": "plug"}),
         "hold"),
        (running(state="stopped"), "node-offline"),
        (running(state="hung"), "node-offline"),
        (running(update={"unreachable_since": T0 - 1800}), "control-plane"),
    ],
)  # fmt: skip
def test_each_condition(status: dict[str, Any], kind: str) -> None:
    assert kinds(status) == {kind}


def test_conditions_below_their_thresholds_raise_nothing() -> None:
    almost_full = {"ok": True, "data": {"used_bytes": 89, "allocated_bytes": 100}}
    assert kinds(running(last_pulse=almost_full)) == set()
    assert kinds(running(update={"unreachable_since": T0 - 1799})) == set()
    # A stop with a restart planned is the keeper's backoff, not the node offline.
    assert kinds(running(state="stopped", next_start_in=3.0)) == set()
    # A failure that a later committed update fixed.
    fixed = {
        "last_failure": {"at": T0 - 100, "message": "x"},
        "last_outcome": {"outcome": "committed", "at": T0 - 50},
    }
    assert kinds(running(update=fixed)) == set()


def test_a_hold_speaks_instead_of_node_offline() -> None:
    held = running(state="stopped", hold={"reason": "storage gone", "since": T0, "fix": "plug"})
    notice = conditions(held, T0, NotifyState(), POLICY)["hold"]
    assert notice.message == "storage gone. plug"


def test_disk_usage_needs_both_numbers() -> None:
    assert disk_usage(running()) == (10, 100)
    assert disk_usage(running(last_pulse=None)) is None
    assert disk_usage(running(last_pulse={"ok": False, "data": None})) is None
    assert disk_usage(running(last_pulse={"data": {"used_bytes": 1}})) is None
    assert kinds(running(last_pulse={"data": {"used_bytes": 0, "allocated_bytes": 0}})) == set()


def test_no_update_table_is_no_update_condition() -> None:
    status = running()
    status["update"] = None
    assert kinds(status) == set()


def test_the_keeper_unreachable_counts_from_the_first_silent_snapshot() -> None:
    assert kinds(None, T0) == set()  # just now: a self-update's restart takes seconds
    down = NotifyState(keeper_down_since=T0)
    assert kinds(None, T0 + 119, down) == set()
    assert kinds(None, T0 + 120, down) == {"keeper-unreachable"}


def test_new_problems_at_error_or_worse_one_per_source_newest_speaks() -> None:
    found = problem_conditions(
        [
            problem(T0 + 1, "WARNING", "updater"),
            problem(T0 + 2, "ERROR", "node"),
            problem(T0 + 3, "CRITICAL", "node", fix="reconnect"),
            problem(T0 + 4, "ERROR", "keeper"),
        ]
    )
    assert set(found) == {"problem:node", "problem:keeper"}
    assert found["problem:node"] == Notice(
        "problem:node", "node: critical", f"failure at {T0 + 3} What to do: reconnect"
    )


# -- debounce over successive snapshots ----------------------------------------------------


def run(snapshots: list[tuple[float, dict[str, Any] | None, list[Problem]]]) -> list[list[str]]:
    """Feed snapshots in order; the kinds told at each."""
    state, told = NotifyState(), []
    for now, status, new in snapshots:
        notices, state = decide(state, status, new, now, POLICY)
        told.append([n.kind for n in notices])
    return told


def test_a_crash_loop_over_a_hundred_polls_is_told_once() -> None:
    loop = running(crash_loop=True)
    told = run([(T0 + 3 * i, loop, []) for i in range(100)])
    assert told[0] == ["crash-loop"]
    assert all(t == [] for t in told[1:])


def test_a_lasting_condition_is_told_again_after_the_repeat_interval() -> None:
    loop = running(crash_loop=True)
    told = run([(T0, loop, []), (T0 + 3599, loop, []), (T0 + 3600, loop, []),
                (T0 + 3700, loop, [])])  # fmt: skip
    assert told == [["crash-loop"], [], ["crash-loop"], []]


def test_a_condition_that_cleared_and_came_back_is_told_after_the_gap_not_before() -> None:
    loop, ok = running(crash_loop=True), running()
    told = run(
        [
            (T0, loop, []),
            (T0 + 10, ok, []),  # cleared
            (T0 + 20, loop, []),  # flapping: within the gap
            (T0 + 30, ok, []),
            (T0 + 400, loop, []),  # back after the gap: told
            (T0 + 410, loop, []),
        ]
    )
    assert told == [["crash-loop"], [], [], [], ["crash-loop"], []]


def test_kinds_are_debounced_apart() -> None:
    both = running(crash_loop=True, update={"held": {"version": "1.2", "message": "m"}})
    told = run([(T0, running(crash_loop=True), []), (T0 + 5, both, [])])
    assert told == [["crash-loop"], ["update-held"]]


def test_the_clock_set_back_tells_rather_than_stays_silent() -> None:
    loop = running(crash_loop=True)
    assert run([(T0, loop, []), (T0 - 1000, loop, [])]) == [["crash-loop"], ["crash-loop"]]


def test_new_problems_are_events_debounced_per_source() -> None:
    told = run(
        [
            (T0, running(), [problem(T0)]),
            (T0 + 3, running(), []),
            (T0 + 6, running(), [problem(T0 + 5)]),  # within the gap: the list shows it
            (T0 + 400, running(), [problem(T0 + 399), problem(T0 + 399, source="keeper")]),
        ]
    )
    assert told == [["problem:node"], [], [], ["problem:node", "problem:keeper"]]


def test_the_keeper_down_for_long_is_told_once_and_again_after_it_came_back_and_went() -> None:
    ok = running()
    told = run(
        [
            (T0, None, []),
            (T0 + 60, None, []),
            (T0 + 120, None, []),  # two minutes without an answer
            (T0 + 180, None, []),
            (T0 + 200, ok, []),  # back
            (T0 + 250, None, []),  # gone again: counts from here
            (T0 + 369, None, []),
            (T0 + 600, None, []),
        ]
    )
    assert told == [[], [], ["keeper-unreachable"], [], [], [], [], ["keeper-unreachable"]]


def test_the_state_says_since_when_the_keeper_is_down() -> None:
    _, state = decide(NotifyState(), None, [], T0, POLICY)
    assert state.keeper_down_since == T0
    _, state = decide(state, None, [], T0 + 50, POLICY)
    assert state.keeper_down_since == T0
    _, state = decide(state, running(), [], T0 + 60, POLICY)
    assert state.keeper_down_since is None


def test_the_default_policy_is_used_when_none_is_given() -> None:
    notices, _ = decide(NotifyState(), running(crash_loop=True), [], T0)
    assert [n.kind for n in notices] == ["crash-loop"]
