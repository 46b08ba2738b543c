"""Check timing (pure): first delay, jitter, backoff, Retry-After."""

from __future__ import annotations

import email.utils
import itertools
import random

import pytest

from nodekeeper.backoff import parse_retry_after
from nodekeeper.updater.schedule import (
    CheckTiming,
    backoff_base,
    first_delay,
    next_delay,
)

T = CheckTiming(interval=900, jitter=0.1, backoff_initial=30, backoff_max=3600)
US = [0.0, 0.25, 0.5, 0.75, 0.999999]


def test_first_delay_spans_zero_to_interval_plus_jitter() -> None:
    assert first_delay(T, 0.0) == 0
    assert first_delay(T, 0.5) == 450
    assert first_delay(T, 0.9) == pytest.approx(810)  # the flat part ends at 900 × 0.9
    assert 989 < first_delay(T, 0.999999) < 990  # and the tail at 900 × 1.1
    assert first_delay(CheckTiming(interval=60, jitter=0), 0.999999) < 60


def test_first_delay_is_the_equilibrium_distribution() -> None:
    """Its distribution function is that of the residual time to the next check in a
    fleet that has been checking for ever: P(delay > t) = ∫ (1 - F) / interval."""
    for t in (0.0, 300.0, 809.0, 830.0, 900.0, 950.0, 989.0):
        us = [i / 20_000 for i in range(20_000)]
        beyond = sum(first_delay(T, u) > t for u in us) / len(us)
        # flat to 810 s, then the triangle of 1 - F over [810, 990]
        expected = 1 - t / 900 if t < 810 else (990 - t) ** 2 / (4 * 0.1 * 900**2)
        assert beyond == pytest.approx(expected, abs=1e-3), t


def test_a_fleet_restarted_together_checks_at_a_steady_rate() -> None:
    """30,000 keepers started at the same instant, their checks over three intervals in
    one-minute buckets (the keeper's functions, a seeded generator): the busiest minute
    stays within 10 % of the mean (the noise of ~2,000 checks a minute is ~2 %). With a
    first delay uniform in [0, interval) it was 1.33 + noise: the second checks start at
    810 s while the first ones still come."""
    rand = random.Random(14).random
    buckets = [0] * 45
    for _ in range(30_000):
        t = first_delay(T, rand())
        while t < 2700:
            buckets[int(t // 60)] += 1
            t += next_delay(T, 0, rand())
    assert max(buckets) / (sum(buckets) / len(buckets)) < 1.1


@pytest.mark.parametrize("u", US)
def test_successful_checks_are_interval_plus_minus_jitter(u: float) -> None:
    delay = next_delay(T, 0, u)
    assert 810 <= delay < 990
    assert delay == pytest.approx(900 * (1 + 0.1 * (2 * u - 1)))


def test_jitter_zero_is_exact() -> None:
    t = CheckTiming(interval=60, jitter=0)
    assert {next_delay(t, 0, u) for u in US} == {60}


def test_backoff_doubles_to_the_cap() -> None:
    bases = [backoff_base(T, n) for n in range(1, 10)]
    assert bases == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]
    # A keeper that has failed for years neither overflows nor exceeds the cap.
    assert backoff_base(T, 10**9) == 3600


@pytest.mark.parametrize(("failures", "u"), list(itertools.product(range(1, 12), US)))
def test_backoff_is_jittered_around_its_base(failures: int, u: float) -> None:
    base = backoff_base(T, failures)
    assert base * 0.9 <= next_delay(T, failures, u) < base * 1.1


def test_retry_after_is_a_floor_spread_upwards() -> None:
    # Asked for 120 s: never earlier, and spread over up to +10 % (jitter) so a fleet
    # told the same number does not come back in the same second.
    delays = [next_delay(T, 1, u, retry_after=120) for u in US]
    assert min(delays) == 120
    assert max(delays) < 132
    assert len(set(delays)) == len(US)


def test_retry_after_below_backoff_does_not_shorten_it() -> None:
    assert next_delay(T, 3, 0.5, retry_after=1) == backoff_base(T, 3)


def test_retry_after_also_applies_after_success() -> None:
    # A 200 with Retry-After never happens in practice, but the rule is the same.
    assert next_delay(T, 0, 0.0, retry_after=5000) == 5000


def test_absurd_retry_after_is_capped() -> None:
    assert next_delay(T, 1, 0.0, retry_after=10**9) == T.retry_after_max
    assert next_delay(T, 1, 0.5, retry_after=float("inf")) == backoff_base(T, 1)


def test_negative_retry_after_counts_as_zero() -> None:
    assert next_delay(T, 1, 0.5, retry_after=-50) == 30


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"interval": 0}, "interval"),
        ({"jitter": 1}, "jitter"),
        ({"jitter": -0.1}, "jitter"),
        ({"backoff_initial": 0}, "backoff"),
        ({"backoff_initial": 10, "backoff_max": 5}, "backoff"),
        ({"retry_after_max": 0}, "retry_after_max"),
    ],
)
def test_bad_timing_is_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CheckTiming(**kwargs)


@pytest.mark.parametrize("u", [-0.1, 1.0, 2.0])
def test_u_outside_unit_interval_is_refused(u: float) -> None:
    with pytest.raises(ValueError, match="u must be"):
        first_delay(T, u)
    with pytest.raises(ValueError, match="u must be"):
        next_delay(T, 0, u)


def test_failures_must_not_be_negative() -> None:
    with pytest.raises(ValueError):
        next_delay(T, -1, 0.5)
    with pytest.raises(ValueError):
        backoff_base(T, 0)


NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("120", 120.0),
        (" 0 ", 0.0),
        ("soon", None),
        ("-5", None),
        ("1.5", None),
        (email.utils.formatdate(NOW + 90, usegmt=True), 90.0),
        (email.utils.formatdate(NOW - 90, usegmt=True), 0.0),
        ("Sun, 06 Nov 1994 08:49:37 -0000", None),  # RFC 9110 dates are GMT
        ("Sun, 99 Nov 1994 08:49:37 GMT", None),
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, NOW) == expected
