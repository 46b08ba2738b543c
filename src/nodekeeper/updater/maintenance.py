"""When the operator does not want updates (issue 13): a daily quiet window ("not between
18:00 and 23:00", local time) and a pause until a time. Pure: the caller passes the local
time and whether the node is below the network's minimum version, which always wins,
because a node below the minimum gets no traffic: a quiet window must never cost that.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time

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
    """Whether an update may start now."""
    if below_minimum:
        return Verdict(True, "below the network's minimum version: updating despite any pause")
    if paused_until is not None and now_local < paused_until:
        return Verdict(False, f"updates paused until {paused_until:%Y-%m-%d %H:%M}")
    if window is not None and window.contains(now_local.time()):
        return Verdict(False, f"in the quiet window {window.start:%H:%M}-{window.end:%H:%M}")
    return Verdict(True, "")
