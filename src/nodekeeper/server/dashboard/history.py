"""The ramp of one rollout over time, rebuilt from the audit log (pure).

Nothing stores the ramp's past: the rollout row holds only its present segment. The
audit log has every change, in order, with the percent before and after it
(``rollout.start``, ``.pause``, ``.resume``, ``.set``, and the auto-pause's
``.auto_pause``, ``.stage`` and ``.abort``); between two changes the ramp is the linear
function of ``server/ramp.py`` (flat for a staged plan, which has no rate and moves by
``rollout.stage`` rows). Replaying the rows through the same functions gives the
exact curve: a point at each change, a corner where a running ramp reached 100 %, and
the present. An action this module does not know moves the percent to its
``percent_after`` and leaves running/paused alone, so a newer audit action draws
correctly enough instead of breaking the page.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from .. import ramp

# What each action leaves the ramp as; None keeps whether it was running.
_RUNNING_AFTER: dict[str, bool | None] = {
    "rollout.pause": False,
    "rollout.auto_pause": False,
    "rollout.abort": False,
    "rollout.resume": True,
    "rollout.set": None,
    "rollout.stage": None,
}


@dataclass(frozen=True)
class Marker:
    at: float
    percent: float
    action: str  # the audit action without "rollout."
    by: str


@dataclass(frozen=True)
class RampHistory:
    start: float
    end: float
    points: list[tuple[float, float]]  # (unix s, percent), in time order
    markers: list[Marker]


def _advance(
    points: list[tuple[float, float]], state: ramp.RampState, since: float, until: float
) -> None:
    """The curve from ``since`` to ``until`` under ``state``: a corner where it hit 100."""
    full = ramp.eta_complete(state, since)
    if full is not None and since < full < until:
        points.append((full, 100.0))
    points.append((until, ramp.percent_at(state, until)))


def rebuild(
    entries: Iterable[Mapping[str, Any]],
    process: str,
    version: str,
    now: float,
    current_percent: float | None = None,
) -> RampHistory | None:
    """The ramp of the newest rollout of ``process`` to ``version``.

    ``entries`` are audit rows (at, action, remote, detail) oldest first; others are
    skipped. ``current_percent``, the percent the status shows now, ends the curve when
    the replay disagrees with it (a change the log does not explain is drawn as a step
    at the end, not hidden). None when the log has no start of this rollout."""
    mine = [
        e
        for e in entries
        if str(e.get("action", "")).startswith("rollout.")
        and isinstance(e.get("detail"), Mapping)
        and e["detail"].get("process") == process
    ]
    starts = [
        i
        for i, e in enumerate(mine)
        if e["action"] == "rollout.start" and e["detail"].get("version") == version
    ]
    if not starts:
        return None
    first = mine[starts[-1]]
    start_at = float(first["at"])
    # A staged plan starts at its first stage (decision 079), a linear ramp at 0.
    stages = first["detail"].get("stages")
    opening = float(stages[0]) if isinstance(stages, list) and stages else 0.0
    state = ramp.start(start_at, first["detail"].get("rate_per_day"), opening)
    points: list[tuple[float, float]] = [(start_at, opening)]
    markers = [Marker(start_at, opening, "start", str(first.get("remote", "")))]
    last = start_at
    for entry in mine[starts[-1] + 1 :]:
        if entry["action"] == "rollout.start":
            break  # a newer rollout of another version replaced this one
        at = max(last, float(entry["at"]))
        _advance(points, state, last, at)
        state = _apply(state, entry, at)
        percent = ramp.percent_at(state, at)
        points.append((at, percent))
        markers.append(
            Marker(at, percent, entry["action"].removeprefix("rollout."), str(entry["remote"]))
        )
        last = at
    end = max(now, last)
    _advance(points, state, last, end)
    if current_percent is not None and abs(points[-1][1] - current_percent) > 0.01:
        points.append((end, current_percent))
    drawn = [p for i, p in enumerate(points) if i == 0 or p != points[i - 1]]
    return RampHistory(start=start_at, end=end, points=drawn, markers=markers)


def _apply(state: ramp.RampState, entry: Mapping[str, Any], at: float) -> ramp.RampState:
    detail = entry["detail"]
    running = _RUNNING_AFTER.get(entry["action"])
    if running is None:
        running = not state.paused
    if "rate_per_day" in detail and entry["action"] != "rollout.start":
        state = replace(state, rate_per_day=detail["rate_per_day"])
    after = detail.get("percent_after", detail.get("percent"))
    if after is None:
        after = 0.0 if entry["action"] == "rollout.abort" else ramp.percent_at(state, at)
    return ramp.RampState(
        base_percent=float(after),
        rate_per_day=state.rate_per_day,
        segment_start=at if running else None,
    )
