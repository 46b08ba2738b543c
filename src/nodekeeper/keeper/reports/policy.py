"""Pure decisions of the reporter: what to drop when the queue is full, what an answer
means, how long to wait before the next try. No I/O, no clock, no randomness of their
own (the caller passes ``now`` and ``rand``), so each is tested exhaustively."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from nodekeeper.backoff import doubling

# -- what to drop ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    """One report as the drop rule sees it. ``pinned``: being sent right now, so it
    counts against the caps but cannot be dropped (it may be stored already)."""

    key: int  # queue order: smaller is older
    size: int
    failure: bool
    pinned: bool = False


def choose_drops(
    queued: Sequence[Slot], incoming: Slot | None, max_count: int, max_bytes: int
) -> list[Slot]:
    """The reports to drop so that ``queued`` plus ``incoming`` fit both caps.

    Non-failures (heartbeats, successes) go first, oldest first: a newer heartbeat says
    the same thing, and a failure is what an operator needs to see. Only then failures,
    oldest first. ``incoming`` is the newest report and competes like any other: a
    heartbeat arriving at a queue full of failures is the one dropped.
    """
    everyone = [*queued, *([incoming] if incoming is not None else [])]
    count = len(everyone)
    size = sum(s.size for s in everyone)
    if count <= max_count and size <= max_bytes:
        return []
    droppable = [s for s in everyone if not s.pinned]
    order = sorted(droppable, key=lambda s: (s.failure, s.key))
    drops: list[Slot] = []
    for slot in order:
        if count <= max_count and size <= max_bytes:
            break
        drops.append(slot)
        count -= 1
        size -= slot.size
    return drops


# -- what an answer means -------------------------------------------------------------------


class Verdict(enum.Enum):
    DELIVERED = "delivered"  # stored now, or stored before (a re-send): delete it
    RETRY = "retry"  # the server or the way to it is unwell: keep it, wait, try again
    REJECTED = "rejected"  # this report can never be accepted: move it aside


# What the control plane answers for a report it will refuse whatever the timing:
# 401 unsigned/forged/another node's key, 413 too large, 422 malformed.
REJECTING = frozenset({401, 413, 422})


def classify_status(status: int) -> Verdict:
    """Any other status, 4xx included, is retried: a 404 or 403 comes from a wrong URL,
    an old server or a proxy, and a report must not be lost to a configuration mistake
    that an operator can fix. The backoff is capped, so a retry costs one request a few
    minutes."""
    if 200 <= status < 300:
        return Verdict.DELIVERED
    if status in REJECTING:
        return Verdict.REJECTED
    return Verdict.RETRY


# -- how long to wait -----------------------------------------------------------------------


def backoff_delay(
    failures: int, initial: float, maximum: float, jitter: float, rand: float
) -> float:
    """Exponential backoff after ``failures`` failures in a row (1 → ``initial``), doubled
    each time, spread by ±``jitter`` (``rand`` in [0, 1)) so that nodes that lost the
    server at the same moment do not come back in step, and never above ``maximum``."""
    if failures < 1:
        return 0.0
    base = doubling(failures - 1, initial, maximum)
    return max(0.0, min(maximum, base * (1.0 + jitter * (2.0 * rand - 1.0))))


@dataclass(frozen=True)
class RetryTiming:
    initial: float = 1.0
    maximum: float = 300.0
    jitter: float = 0.2
    retry_after_max: float = 3600.0
    # Multiplies what Retry-After asks for. 1.0 in service; tests shrink it so a real 429
    # (which asks for 60 s) can be checked without waiting a minute.
    retry_after_scale: float = 1.0


def retry_delay(
    failures: int, retry_after: float | None, timing: RetryTiming, rand: float
) -> float:
    """The wait before the next try. A server's Retry-After is honoured: never less than
    it asks (plus up to ``jitter`` more, so many nodes told "60" do not return together),
    but capped at ``retry_after_max`` so a hostile or broken answer cannot park the
    queue for days, and floored at ``initial`` so "Retry-After: 0" is not a busy loop.
    Without one, exponential backoff."""
    if retry_after is None:
        return backoff_delay(failures, timing.initial, timing.maximum, timing.jitter, rand)
    asked = min(max(retry_after, timing.initial), timing.retry_after_max)
    return asked * (1.0 + timing.jitter * rand) * timing.retry_after_scale
