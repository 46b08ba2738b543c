"""The reporter's pure decisions, exhaustively: drops, answers, waits."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from nodekeeper.backoff import parse_retry_after
from nodekeeper.keeper.reports.policy import (
    RetryTiming,
    Slot,
    Verdict,
    backoff_delay,
    choose_drops,
    classify_status,
    retry_delay,
)


def _fits(slots: list[Slot], max_count: int, max_bytes: int) -> bool:
    return len(slots) <= max_count and sum(s.size for s in slots) <= max_bytes


def _queues(n: int):
    """Every queue of n slots: each old or new, failure or not, size 1 or 3, pinned or not
    (at most one pinned, like the sender's one report in flight)."""
    for kinds in itertools.product((False, True), repeat=n):
        for sizes in itertools.product((1, 3), repeat=n):
            for pinned in range(-1, n):
                yield [
                    Slot(key=i, size=sizes[i], failure=kinds[i], pinned=i == pinned)
                    for i in range(n)
                ]


@pytest.mark.parametrize("n", range(0, 5))
def test_choose_drops_exhaustively(n: int) -> None:
    """The rule, checked against every small queue and cap: the result fits whenever
    dropping can make it fit; it is as short as possible; pinned reports are never
    dropped; no failure goes while a droppable non-failure stays; within each class the
    dropped are the oldest."""
    cases = 0
    for slots in _queues(n):
        for with_incoming in (False, True):
            queued, incoming = (slots[:-1], slots[-1]) if with_incoming and slots else (slots, None)
            if incoming is not None and incoming.pinned:
                continue  # the incoming report is never in flight
            everyone = [*queued, *([incoming] if incoming else [])]
            for max_count in range(1, n + 2):
                for max_bytes in range(1, 3 * n + 2):
                    cases += 1
                    drops = choose_drops(queued, incoming, max_count, max_bytes)
                    kept = [s for s in everyone if s not in drops]
                    assert not any(d.pinned for d in drops)
                    assert len(set(drops)) == len(drops)
                    pinned_only = [s for s in everyone if s.pinned]
                    if _fits(pinned_only, max_count, max_bytes):
                        assert _fits(kept, max_count, max_bytes), (everyone, drops)
                    else:
                        assert kept == pinned_only  # dropped all it could
                    if drops:  # minimal: without the last drop it would not fit
                        assert not _fits([*kept, drops[-1]], max_count, max_bytes)
                    for d in drops:
                        for k in kept:
                            if k.pinned:
                                continue
                            if d.failure and not k.failure:
                                raise AssertionError(f"failure {d} dropped, {k} kept")
                            if d.failure == k.failure:
                                assert d.key < k.key, (d, k)
    assert cases > 0


def test_choose_drops_examples() -> None:
    hb = [Slot(i, 10, False) for i in range(3)]
    fail = [Slot(10 + i, 10, True) for i in range(3)]
    queued = [fail[0], hb[0], fail[1], hb[1]]
    # Full by count: the oldest heartbeat goes first, though a failure is older.
    assert choose_drops(queued, fail[2], 4, 10**6) == [hb[0]]
    assert choose_drops(queued, fail[2], 3, 10**6) == [hb[0], hb[1]]
    # Then the oldest failure.
    assert choose_drops(queued, fail[2], 2, 10**6) == [hb[0], hb[1], fail[0]]
    # A heartbeat arriving at a queue of failures is the one dropped.
    assert choose_drops(fail[:2], hb[2], 2, 10**6) == [hb[2]]
    # By bytes.
    assert choose_drops(queued, None, 10, 25) == [hb[0], hb[1]]
    # The report in flight stays, even when it is the oldest heartbeat.
    pinned = Slot(0, 10, False, pinned=True)
    assert choose_drops([pinned, hb[1]], hb[2], 2, 10**6) == [hb[1]]
    assert choose_drops([], None, 1, 1) == []


@pytest.mark.parametrize("status", range(100, 600))
def test_classify_every_status(status: int) -> None:
    verdict = classify_status(status)
    if 200 <= status < 300:
        assert verdict is Verdict.DELIVERED
    elif status in (401, 413, 422):
        assert verdict is Verdict.REJECTED
    else:  # 429, 5xx, and 4xx from proxies or a wrong URL: kept and retried
        assert verdict is Verdict.RETRY


def test_parse_retry_after() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after(None, now) is None
    assert parse_retry_after("60", now) == 60.0
    assert parse_retry_after(" 0 ", now) == 0.0
    later = format_datetime(datetime.fromtimestamp(now + 120, UTC), usegmt=True)
    assert parse_retry_after(later, now) == pytest.approx(120.0)
    earlier = format_datetime(datetime.fromtimestamp(now - 120, UTC), usegmt=True)
    assert parse_retry_after(earlier, now) == 0.0
    for junk in ("", "soon", "-5", "1.5", "Mon, 99 Foo 2024 00:00:00 GMT", "9" * 400 + "x"):
        assert parse_retry_after(junk, now) is None, junk


def test_parse_retry_after_huge_number_is_just_big() -> None:
    # Capped later by retry_after_max; here it only must not raise.
    assert parse_retry_after("9" * 40, 0.0) == float("9" * 40)


def test_backoff_doubles_to_the_cap_with_bounded_jitter() -> None:
    assert backoff_delay(0, 1, 300, 0.2, 0.5) == 0.0
    exact = [backoff_delay(n, 1, 300, 0.0, 0.9) for n in range(1, 12)]
    assert exact == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
    for failures in (1, 2, 5, 9, 10, 200, 10**9):
        base = min(300.0, math.pow(2, min(failures - 1, 64)))
        for rand in (0.0, 0.25, 0.5, 0.999999):
            d = backoff_delay(failures, 1, 300, 0.2, rand)
            assert 0.8 * base - 1e-9 <= d <= min(300.0, 1.2 * base) + 1e-9
            assert d <= 300.0
    # Jitter spreads: the extremes differ.
    assert backoff_delay(3, 1, 300, 0.2, 0.0) < backoff_delay(3, 1, 300, 0.2, 0.99)


def test_retry_delay_honours_retry_after() -> None:
    t = RetryTiming(initial=1, maximum=300, jitter=0.2, retry_after_max=3600)
    # Never less than asked, at most jitter more, whatever the failure count.
    for failures in (1, 5, 50):
        for rand in (0.0, 0.5, 0.99):
            d = retry_delay(failures, 60.0, t, rand)
            assert 60.0 <= d <= 72.0
    # Without one: the backoff.
    assert retry_delay(3, None, t, 0.5) == backoff_delay(3, 1, 300, 0.2, 0.5)
    # "0" is not a busy loop; absurd values are capped.
    assert retry_delay(1, 0.0, t, 0.0) == 1.0
    assert retry_delay(1, 1e12, t, 0.0) == 3600.0
    # The test scale shrinks what the server asked for, and only that.
    scaled = RetryTiming(initial=1, maximum=300, jitter=0.0, retry_after_scale=0.01)
    assert retry_delay(1, 60.0, scaled, 0.3) == pytest.approx(0.6)
