"""The supervisor's pure decisions, walked through exhaustively with a fake clock."""

from __future__ import annotations

import itertools

import pytest

from nodekeeper.keeper.policy import (
    CrashLoopDetector,
    ExitDecision,
    ProbeTracker,
    ProbeVerdict,
    RestartBackoff,
    SoftLimitCounter,
    backoff_delay,
    cpu_percent,
    decide_after_exit,
)


@pytest.mark.parametrize(
    ("failures", "expected"),
    [(0, 1), (1, 2), (2, 4), (3, 8), (4, 16), (5, 32), (6, 64), (7, 128), (8, 256), (9, 300)],
)
def test_backoff_doubles_from_one_second_to_five_minutes(failures: int, expected: float) -> None:
    assert backoff_delay(failures, 1.0, 300.0) == expected


def test_backoff_stays_capped_for_any_number_of_failures() -> None:
    for failures in (10, 100, 10_000, 10**9):
        assert backoff_delay(failures, 1.0, 300.0) == 300.0
    with pytest.raises(ValueError):
        backoff_delay(-1, 1.0, 300.0)


def test_restart_backoff_grows_and_resets_only_after_a_long_healthy_run() -> None:
    backoff = RestartBackoff(1.0, 300.0, reset_after=600.0)
    assert [backoff.on_failure(0.0) for _ in range(4)] == [1, 2, 4, 8]
    # Healthy just short of the reset: keeps growing.
    assert backoff.on_failure(599.9) == 16
    # Healthy for the full stretch: back to the start.
    assert backoff.on_failure(600.0) == 1
    assert backoff.on_failure(0.0) == 2


def test_restart_backoff_reset_while_running() -> None:
    backoff = RestartBackoff(0.2, 10.0, reset_after=5.0)
    for _ in range(3):
        backoff.on_failure(0.0)
    backoff.on_healthy(4.9)
    assert backoff.failures == 3
    backoff.on_healthy(5.0)
    assert backoff.failures == 0
    assert backoff.on_failure(0.0) == 0.2


def test_crash_loop_is_five_failures_inside_ten_minutes() -> None:
    detector = CrashLoopDetector(threshold=5, window=600.0)
    assert [detector.record(t) for t in (0, 100, 200, 300)] == [False] * 4
    assert detector.record(400) is True
    # The flag lowers once old failures leave the window...
    assert detector.looping(600) is True  # the failure at 0 is exactly 600 s old: counts
    assert detector.looping(600.001) is False
    assert detector.recent(600.001) == 4
    # ...and rises again with the next failure inside it.
    assert detector.record(650) is True


def test_crash_loop_never_flags_spread_out_failures() -> None:
    detector = CrashLoopDetector(threshold=5, window=600.0)
    assert not any(detector.record(t * 151.0) for t in range(100))


def test_crash_loop_threshold_must_be_positive() -> None:
    with pytest.raises(ValueError):
        CrashLoopDetector(0, 1.0)


def test_soft_limit_needs_consecutive_readings() -> None:
    counter = SoftLimitCounter(limit=100, readings=3)
    readings = [101, 101, 50, 101, 101, 100, 101, 101, 101]
    assert [counter.observe(r) for r in readings] == [
        False, False, False, False, False, False, False, False, True,
    ]  # fmt: skip
    # After a trigger the count starts over.
    assert [counter.observe(200) for _ in range(3)] == [False, False, True]


def test_soft_limit_off_never_triggers() -> None:
    counter = SoftLimitCounter(limit=None, readings=1)
    assert not any(counter.observe(10**15) for _ in range(10))
    with pytest.raises(ValueError):
        SoftLimitCounter(1, 0)


@pytest.mark.parametrize("readings", [1, 2, 3, 5])
def test_soft_limit_every_pattern_of_four_readings(readings: int) -> None:
    for pattern in itertools.product([False, True], repeat=4):
        counter = SoftLimitCounter(limit=10, readings=readings)
        run = 0
        for over in pattern:
            run = run + 1 if over else 0
            expected = run >= readings
            assert counter.observe(11 if over else 10) is expected
            if expected:
                run = 0


def test_probe_failures_in_grace_do_not_count_until_first_success_or_grace_end() -> None:
    tracker = ProbeTracker(threshold=3, grace=300.0, started_at=1000.0)
    assert [tracker.observe(False, 1000.0 + t) for t in (10, 100, 299)] == [ProbeVerdict.GRACE] * 3
    assert tracker.failures == 0
    assert tracker.observe(False, 1300.0) is ProbeVerdict.FAILING
    assert tracker.observe(False, 1310.0) is ProbeVerdict.FAILING
    assert tracker.observe(False, 1320.0) is ProbeVerdict.HUNG


def test_first_success_ends_the_grace_period_early() -> None:
    tracker = ProbeTracker(threshold=2, grace=300.0, started_at=0.0)
    assert tracker.observe(True, 5.0) is ProbeVerdict.HEALTHY
    assert not tracker.in_grace(6.0)
    assert tracker.observe(False, 10.0) is ProbeVerdict.FAILING
    assert tracker.observe(False, 20.0) is ProbeVerdict.HUNG


def test_a_success_resets_the_failure_count() -> None:
    tracker = ProbeTracker(threshold=3, grace=0.0, started_at=0.0)
    verdicts = [tracker.observe(ok, float(t)) for t, ok in enumerate([0, 0, 1, 0, 0, 1, 0, 0, 0])]
    assert verdicts[-1] is ProbeVerdict.HUNG
    assert ProbeVerdict.HUNG not in verdicts[:-1]
    with pytest.raises(ValueError):
        ProbeTracker(0, 0.0, 0.0)


def test_cpu_percent_is_per_core_and_clamped() -> None:
    assert cpu_percent(1.0, 10.0, 1.5, 11.0) == pytest.approx(50.0)
    assert cpu_percent(0.0, 0.0, 4.0, 2.0) == pytest.approx(200.0)
    assert cpu_percent(5.0, 0.0, 4.0, 1.0) == 0.0  # a child exited with its CPU time
    assert cpu_percent(0.0, 1.0, 1.0, 1.0) == 0.0  # no time passed


def _decide(
    code: int | None,
    reason: str | None,
    healthy: float = 0.0,
    now: float = 0.0,
    backoff: RestartBackoff | None = None,
    loop: CrashLoopDetector | None = None,
) -> ExitDecision:
    return decide_after_exit(
        returncode=code,
        not_set_up_code=78,
        restart_reason=reason,
        healthy_seconds=healthy,
        now=now,
        backoff=backoff or RestartBackoff(1.0, 300.0, 600.0),
        crash_loop=loop or CrashLoopDetector(5, 600.0),
        setup_recheck=60.0,
    )


def test_exit_78_is_needs_setup_without_backoff_or_crash_count() -> None:
    backoff, loop = RestartBackoff(1.0, 300.0, 600.0), CrashLoopDetector(1, 600.0)
    for _ in range(10):
        decision = _decide(78, None, backoff=backoff, loop=loop)
        assert (decision.action, decision.delay, decision.failure) == ("needs-setup", 60.0, False)
    assert backoff.failures == 0 and loop.recent(0.0) == 0


@pytest.mark.parametrize("code", [None, -9, -15, -11, 0, 1, 2, 70, 255])
def test_any_other_unrequested_exit_is_a_failure(code: int | None) -> None:
    backoff = RestartBackoff(1.0, 300.0, 600.0)
    assert [_decide(code, None, backoff=backoff).delay for _ in range(3)] == [1, 2, 4]


def test_hang_is_a_failure_and_memory_restart_is_not() -> None:
    backoff, loop = RestartBackoff(1.0, 300.0, 600.0), CrashLoopDetector(2, 600.0)
    hung = _decide(-9, "hung", backoff=backoff, loop=loop)
    assert hung.failure and hung.delay == 1.0 and not hung.crash_loop
    memory = _decide(0, "memory", backoff=backoff, loop=loop)
    assert (memory.action, memory.delay, memory.failure) == ("restart", 0.0, False)
    assert backoff.failures == 1 and loop.recent(0.0) == 1
    # A 78 after a memory restart is still a memory restart: the keeper asked for the stop.
    assert _decide(78, "memory").action == "restart"


def test_crash_loop_is_flagged_but_restarts_go_on_at_the_capped_delay() -> None:
    backoff, loop = RestartBackoff(1.0, 300.0, 600.0), CrashLoopDetector(5, 600.0)
    decisions = [_decide(1, None, now=float(t), backoff=backoff, loop=loop) for t in range(20)]
    assert [d.crash_loop for d in decisions[:5]] == [False] * 4 + [True]
    assert all(d.action == "restart" for d in decisions)
    assert decisions[-1].delay == 300.0
