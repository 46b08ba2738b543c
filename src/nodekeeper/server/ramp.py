"""Rollout ramp arithmetic: pure functions of a persisted state and a clock.

A ramp is stored as (base percent, rate per day, segment start). While running, the
percent at time t is ``base + rate * (t - segment_start) / 1 day``, capped at 100; while
paused, ``segment_start`` is None and the percent stays at ``base``. Pausing, resuming
and setting a percent fold the elapsed part into ``base`` and start a new segment, so a
restart of the server (or another replica) computes the same percent from the same row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

DAY = 86_400.0

RampPhase = Literal["running", "paused", "complete"]


@dataclass(frozen=True)
class RampState:
    base_percent: float
    rate_per_day: float | None  # None: no automatic ramp, only `rollout set`
    segment_start: float | None  # None: paused

    @property
    def paused(self) -> bool:
        return self.segment_start is None


def start(now: float, rate_per_day: float | None, percent: float = 0.0) -> RampState:
    return RampState(base_percent=percent, rate_per_day=rate_per_day, segment_start=now)


def percent_at(state: RampState, now: float) -> float:
    if state.segment_start is None or not state.rate_per_day:
        return min(100.0, state.base_percent)
    elapsed = max(0.0, now - state.segment_start)
    return min(100.0, state.base_percent + state.rate_per_day * elapsed / DAY)


def phase(state: RampState, now: float) -> RampPhase:
    if percent_at(state, now) >= 100.0:
        return "complete"
    return "paused" if state.paused else "running"


def pause(state: RampState, now: float) -> RampState:
    return replace(state, base_percent=percent_at(state, now), segment_start=None)


def resume(state: RampState, now: float) -> RampState:
    if not state.paused:
        return state
    return replace(state, segment_start=now)


def set_percent(state: RampState, percent: float, now: float) -> RampState:
    """Jump to ``percent``; a running ramp continues from there, a paused one stays."""
    return replace(state, base_percent=percent, segment_start=None if state.paused else now)


def quantize(now: float, tick: float) -> float:
    """The start of the tick that ``now`` falls in.

    Every replica evaluates the ramp at the same tick boundaries, so they serve the same
    bytes (and ETag) at the same time, and the document changes at most once per tick.
    """
    if tick <= 0:
        return now
    return math.floor(now / tick) * tick


def eta_complete(state: RampState, now: float) -> float | None:
    """When a running ramp reaches 100 %, or None when it will not on its own."""
    if state.paused or not state.rate_per_day:
        return None
    remaining = 100.0 - percent_at(state, now)
    return now + remaining / state.rate_per_day * DAY if remaining > 0 else now
