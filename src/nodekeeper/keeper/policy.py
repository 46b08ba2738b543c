"""The supervisor's decisions, as plain code with no I/O and no clock of its own.

Every function and class here takes the current time as an argument, so the tests can
walk them through hours of crashes in microseconds, and the asyncio shell in
``supervisor.py`` stays a thin loop that feeds them events.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum

from nodekeeper.backoff import doubling


def backoff_delay(consecutive_failures: int, initial: float, maximum: float) -> float:
    """Delay before restart number ``consecutive_failures + 1``.

    0 failures so far → ``initial``; each further failure doubles it, capped at ``maximum``
    (systemd's RestartSteps / Kubernetes' CrashLoopBackOff shape: 1, 2, 4, ... 300 s).
    """
    return doubling(consecutive_failures, initial, maximum)


class RestartBackoff:
    """Counts consecutive failures and turns them into restart delays.

    A run that stayed healthy for ``reset_after`` seconds wipes the count, so a node that
    crashes once a day always restarts after ``initial`` seconds.
    """

    def __init__(self, initial: float, maximum: float, reset_after: float) -> None:
        self.initial = initial
        self.maximum = maximum
        self.reset_after = reset_after
        self.failures = 0

    def on_failure(self, healthy_seconds: float) -> float:
        """Record a failure after a run that was healthy for ``healthy_seconds``; return the
        delay before the next start."""
        if healthy_seconds >= self.reset_after:
            self.failures = 0
        delay = backoff_delay(self.failures, self.initial, self.maximum)
        self.failures += 1
        return delay

    def on_healthy(self, healthy_seconds: float) -> None:
        """Called while the node runs; resets the count once it has been healthy long enough
        (so status shows the reset without waiting for the next failure)."""
        if healthy_seconds >= self.reset_after:
            self.failures = 0


class CrashLoopDetector:
    """Flags a crash loop: ``threshold`` failures within ``window`` seconds.

    The flag is informational: the supervisor never gives up restarting, it only reports.
    """

    def __init__(self, threshold: int, window: float) -> None:
        if threshold < 1:
            raise ValueError("threshold must be >= 1")
        self.threshold = threshold
        self.window = window
        self._times: deque[float] = deque()

    def record(self, now: float) -> bool:
        """Record a failure at ``now``; True when the node is now in a crash loop."""
        self._times.append(now)
        return self.looping(now)

    def looping(self, now: float) -> bool:
        self._forget_before(now - self.window)
        return len(self._times) >= self.threshold

    def recent(self, now: float) -> int:
        """Failures inside the window ending at ``now``."""
        self._forget_before(now - self.window)
        return len(self._times)

    def _forget_before(self, cutoff: float) -> None:
        # Strictly older than the window; a failure exactly `window` ago still counts.
        while self._times and self._times[0] < cutoff:
            self._times.popleft()


class SoftLimitCounter:
    """``readings`` consecutive memory readings over ``limit`` → restart gracefully.

    One spike (a GC cycle, a burst of uploads) never triggers it; only a sustained excess.
    """

    def __init__(self, limit: int | None, readings: int) -> None:
        if readings < 1:
            raise ValueError("readings must be >= 1")
        self.limit = limit
        self.readings = readings
        self.over = 0

    def observe(self, memory_bytes: int) -> bool:
        """Feed one reading; True exactly when the limit has been exceeded ``readings`` times
        in a row (the count then restarts, so the next trigger needs fresh readings)."""
        if self.limit is None or memory_bytes <= self.limit:
            self.over = 0
            return False
        self.over += 1
        if self.over >= self.readings:
            self.over = 0
            return True
        return False

    def reset(self) -> None:
        self.over = 0


class ProbeVerdict(Enum):
    HEALTHY = "healthy"
    # A failure that does not count (still inside the start grace period).
    GRACE = "grace"
    # A counted failure, still below the threshold.
    FAILING = "failing"
    HUNG = "hung"


class ProbeTracker:
    """Turns probe results into a verdict, Kubernetes-style.

    The start grace period lasts ``grace`` seconds from the start, or ends early at the
    first success (a startup probe): until then failures do not count, so a node that
    migrates its database for four minutes is not killed. After it, ``threshold``
    consecutive failures mean the node is hung.
    """

    def __init__(self, threshold: int, grace: float, started_at: float) -> None:
        if threshold < 1:
            raise ValueError("threshold must be >= 1")
        self.threshold = threshold
        self.grace = grace
        self.started_at = started_at
        self.ever_healthy = False
        self.failures = 0

    def in_grace(self, now: float) -> bool:
        return not self.ever_healthy and now - self.started_at < self.grace

    def observe(self, ok: bool, now: float) -> ProbeVerdict:
        if ok:
            self.ever_healthy = True
            self.failures = 0
            return ProbeVerdict.HEALTHY
        if self.in_grace(now):
            return ProbeVerdict.GRACE
        self.failures += 1
        if self.failures >= self.threshold:
            return ProbeVerdict.HUNG
        return ProbeVerdict.FAILING


def cpu_percent(
    previous_seconds: float, previous_at: float, now_seconds: float, now_at: float
) -> float:
    """CPU use between two readings in percent of one core (200 = two cores busy).

    Clamped at 0: a child that exits between readings takes its CPU time with it, which
    can make the tree's total go down.
    """
    elapsed = now_at - previous_at
    if elapsed <= 0:
        return 0.0
    return max(0.0, (now_seconds - previous_seconds) / elapsed * 100.0)


@dataclass(frozen=True)
class ExitDecision:
    """What to do after the node exited on its own or was stopped for a restart."""

    # "restart" or "needs-setup"
    action: str
    delay: float
    # True when this exit counts as a failure (backoff and crash-loop counting).
    failure: bool
    crash_loop: bool


def decide_after_exit(
    *,
    returncode: int | None,
    not_set_up_code: int,
    restart_reason: str | None,
    healthy_seconds: float,
    now: float,
    backoff: RestartBackoff,
    crash_loop: CrashLoopDetector,
    setup_recheck: float,
) -> ExitDecision:
    """Decide what follows an exit that the keeper did not ask for, or a restart it did.

    ``returncode`` is None when the program could not be started at all (a failure).
    ``restart_reason`` is None for an unrequested exit (a crash, or a clean exit that the
    keeper did not ask for: a node should never just stop), "hung" after a hang was
    detected, "memory" after a soft-limit restart. A memory restart is not a failure: it
    restarts at once and does not feed the crash-loop detector. Exit code
    ``not_set_up_code`` means the node is not set up: no backoff, no crash count; try again
    after ``setup_recheck`` seconds.
    """
    if restart_reason is None and returncode == not_set_up_code:
        return ExitDecision("needs-setup", setup_recheck, failure=False, crash_loop=False)
    if restart_reason == "memory":
        return ExitDecision("restart", 0.0, failure=False, crash_loop=crash_loop.looping(now))
    delay = backoff.on_failure(healthy_seconds)
    looping = crash_loop.record(now)
    return ExitDecision("restart", delay, failure=True, crash_loop=looping)
