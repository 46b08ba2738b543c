"""When to check the control plane next (pure: no clock, no randomness of its own).

Thousands of keepers poll one control plane; checks must never fall into lockstep
(YouTube's "adding jitter isn't a bug"). So:

- the first check comes a random time after start that spreads a fleet rebooted
  together (a power cut, a Windows patch day) so that its checks arrive at a steady rate
  from the first minute on, not only on average (see ``first_delay``);
- later checks come interval × (1 ± jitter) apart, so keepers that did start together
  drift apart instead of staying aligned;
- after a failed check the delay backs off exponentially (initial × 2^(n-1), capped),
  still jittered, because a control plane that is down must not be hammered back down
  by every keeper retrying at once when it returns;
- a server's ``Retry-After`` is a floor: the keeper never comes back earlier than asked,
  and spreads itself over up to ``jitter`` more on top so that everyone told "in 120 s"
  does not arrive in the same second. A value above ``retry_after_max`` is capped, so a
  bogus header cannot silence a keeper for a year.

Every function takes ``u``, a uniform random number in [0, 1), from the caller
(``random.random()`` in the keeper, fixed values in tests).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from nodekeeper.backoff import doubling


@dataclass(frozen=True)
class CheckTiming:
    """Seconds. Defaults: a check every 15 min ± 10 %, backoff 30 s doubling to 1 h."""

    interval: float = 900.0
    jitter: float = 0.1
    backoff_initial: float = 30.0
    backoff_max: float = 3600.0
    retry_after_max: float = 86400.0

    def __post_init__(self) -> None:
        if not self.interval > 0:
            raise ValueError(f"interval must be > 0 s (got {self.interval})")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter must be in [0, 1) (got {self.jitter})")
        if not 0 < self.backoff_initial <= self.backoff_max:
            raise ValueError(
                "backoff must satisfy 0 < backoff_initial <= backoff_max "
                f"(got {self.backoff_initial}, {self.backoff_max})"
            )
        if not self.retry_after_max > 0:
            raise ValueError(f"retry_after_max must be > 0 s (got {self.retry_after_max})")


def _check_u(u: float) -> float:
    if not 0 <= u < 1:
        raise ValueError(f"u must be a uniform random number in [0, 1) (got {u})")
    return u


def _jittered(base: float, jitter: float, u: float) -> float:
    """base × (1 ± jitter), u = 0 → lowest, u → 1 → highest."""
    return base * (1 + jitter * (2 * _check_u(u) - 1))


def first_delay(timing: CheckTiming, u: float) -> float:
    """Delay from keeper start to its first check, drawn from the equilibrium (residual
    life) distribution of the check intervals: density (1 - F(t)) / interval, where F is
    the distribution of interval × (1 ± jitter). That is uniform on [0, interval × (1 -
    jitter)) with probability 1 - jitter, then falling linearly to zero at interval ×
    (1 + jitter).

    Why not uniform in [0, interval): with jittered intervals after it, the second checks
    of the keepers that checked first start arriving at interval × (1 - jitter) while the
    last first checks still come, so a fleet restarted at once peaked at 1.33 × its mean
    rate in the minute before one interval had passed (and dipped after; bench/fleet.py,
    decision 081). With the equilibrium delay the checks of a fleet restarted together
    are a stationary process from the start: as many in every minute (renewal theory:
    a delayed renewal process whose first delay has the equilibrium distribution is
    stationary). ``u`` = 0.5 still gives interval / 2."""
    u = _check_u(u)
    flat = 1 - timing.jitter
    if u < flat:
        return timing.interval * u
    # The falling part: the probability of a delay beyond t is (interval × (1 + jitter)
    # - t)² / (4 × jitter × interval²); solved for t at 1 - u.
    return timing.interval * (1 + timing.jitter - 2 * math.sqrt(timing.jitter * (1 - u)))


def backoff_base(timing: CheckTiming, failures: int) -> float:
    """Un-jittered delay after ``failures`` (>= 1) checks failed in a row."""
    if failures < 1:
        raise ValueError(f"failures must be >= 1 (got {failures})")
    return doubling(failures - 1, timing.backoff_initial, timing.backoff_max)


def next_delay(
    timing: CheckTiming, failures: int, u: float, retry_after: float | None = None
) -> float:
    """Delay until the next check, after a check that ended ``failures`` failures in a row
    (0: it succeeded, a 304 included). ``retry_after`` is the server's Retry-After in
    seconds, if it sent one (see ``parse_retry_after``)."""
    if failures < 0:
        raise ValueError(f"failures must be >= 0 (got {failures})")
    if failures == 0:
        delay = _jittered(timing.interval, timing.jitter, u)
    else:
        delay = _jittered(backoff_base(timing, failures), timing.jitter, u)
    if retry_after is not None and math.isfinite(retry_after):
        floor = min(max(retry_after, 0.0), timing.retry_after_max)
        delay = max(delay, floor * (1 + timing.jitter * u))
    return delay
