"""When the operator does not want updates (issue 13): a daily quiet window ("not between
18:00 and 23:00", local time) and a pause until a time. Pure: the caller passes the local
time and whether the node is below the network's minimum version, which always wins,
because a node below the minimum gets no traffic: a quiet window must never cost that.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any

MAX_PAUSE_DAYS = 90
# The update cycle's decision code for an update the operator's hold keeps back.
HELD = "held-by-maintenance"
_WINDOW = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


@dataclass(frozen=True)
class QuietWindow:
    """Local times; ``start`` == ``end`` is refused (all day or never: say which)."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> QuietWindow:
        found = _WINDOW.match(text)
        if not found:
            raise ValueError(f"quiet window {text!r}: write it as HH:MM-HH:MM, e.g. 18:00-23:00")
        h1, m1, h2, m2 = (int(g) for g in found.groups())
        if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
            raise ValueError(f"quiet window {text!r}: hours are 00-23, minutes 00-59")
        if (h1, m1) == (h2, m2):
            raise ValueError(
                f"quiet window {text!r} starts when it ends: to stop updates for a while, "
                "pause them until a time instead"
            )
        return cls(time(h1, m1), time(h2, m2))

    def contains(self, moment: time) -> bool:
        """Start inclusive, end exclusive; a window past midnight (22:00-06:00) wraps."""
        if self.start < self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    why: str


def may_update(
    now_local: datetime,
    *,
    window: QuietWindow | None,
    paused_until: datetime | None,
    below_minimum: bool,
) -> Verdict:
    """Whether an update may start now. ``why`` is the sentence the status shows."""
    if below_minimum:
        return Verdict(True, "below the network's minimum version: updating despite any pause")
    if paused_until is not None and now_local < paused_until:
        return Verdict(False, f"held: updates are paused until {paused_until:%Y-%m-%d %H:%M}")
    if window is not None and window.contains(now_local.time()):
        return Verdict(
            False,
            f"held by the quiet window {window.start:%H:%M}-{window.end:%H:%M} "
            f"until {window.end:%H:%M}",
        )
    return Verdict(True, "")


@dataclass(frozen=True)
class Maintenance:
    """What the operator set: a daily quiet window and a pause (unix seconds), each
    optional. What ``<state dir>/maintenance.json`` holds and the status shows."""

    window: QuietWindow | None = None
    paused_until: float | None = None

    def verdict(self, now: float, below_minimum: bool) -> Verdict:
        """``may_update`` at the unix time ``now``, read as local time (pure but for the
        machine's time zone, which is what "18:00" means to the operator)."""
        until = datetime.fromtimestamp(self.paused_until) if self.paused_until else None
        return may_update(
            datetime.fromtimestamp(now),
            window=self.window,
            paused_until=until,
            below_minimum=below_minimum,
        )

    def status(self, now: float, below_minimum: bool = False) -> dict[str, Any]:
        """The status API's ``maintenance`` dict; a pause that is over shows as none."""
        verdict = self.verdict(now, below_minimum)
        paused = self.paused_until if self.paused_until and self.paused_until > now else None
        return {
            "quiet_window": format_window(self.window),
            "paused_until": paused,
            "verdict": {"allowed": verdict.allowed, "why": verdict.why},
        }


def format_window(window: QuietWindow | None) -> str | None:
    return f"{window.start:%H:%M}-{window.end:%H:%M}" if window is not None else None


def check_pause(until: object, now: float) -> float | None:
    """A pause's end from a request (unix seconds, or None to resume); ValueError says
    what is wrong. A pause ends in the future and within MAX_PAUSE_DAYS: longer is a
    typo, and the quiet window is the tool for a standing rule."""
    if until is None:
        return None
    if isinstance(until, bool) or not isinstance(until, int | float) or not math.isfinite(until):
        raise ValueError("give the end of the pause as unix seconds, or null to resume updates")
    if until <= now:
        raise ValueError(
            f"{datetime.fromtimestamp(until):%Y-%m-%d %H:%M} has passed: give a time in the "
            "future, or null to resume updates now"
        )
    if until > now + MAX_PAUSE_DAYS * 86400:
        raise ValueError(
            f"a pause may last at most {MAX_PAUSE_DAYS} days; for a standing rule set a "
            "quiet window instead"
        )
    return float(until)
