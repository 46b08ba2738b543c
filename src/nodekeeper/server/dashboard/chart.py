"""The ramp chart as inline SVG, drawn on the server (pure).

No script and no chart library: the page works offline and under a Content Security
Policy without 'unsafe-inline'. Colours and fonts come from the stylesheet through class
names; geometry is in SVG attributes. Every text is escaped (markupsafe), and each
change is a dot whose ``<title>`` the browser shows on hover.
"""

from __future__ import annotations

import datetime as dt

from markupsafe import Markup, escape

from .history import RampHistory

WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 44, 16, 12, 30  # room for the axis labels
X_TICKS = 4


def _time_label(ts: float, span: float) -> str:
    """Ticks a quarter of the span apart: hours for a day, day and hour up to ten days
    (a date alone would repeat), dates beyond."""
    when = dt.datetime.fromtimestamp(ts, dt.UTC)
    if span <= 86_400:
        return when.strftime("%H:%M")
    if span <= 10 * 86_400:
        return when.strftime("%m-%d %H:%M")
    return when.strftime("%Y-%m-%d")


def ramp_svg(history: RampHistory, title: str) -> Markup:
    span = max(history.end - history.start, 60.0)
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(ts: float) -> float:
        return round(LEFT + (ts - history.start) / span * inner_w, 1)

    def y(percent: float) -> float:
        return round(TOP + (1 - min(max(percent, 0.0), 100.0) / 100) * inner_h, 1)

    out = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for percent in (0, 25, 50, 75, 100):
        out.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" '
            f'y1="{y(percent)}" y2="{y(percent)}"/>'
            f'<text class="axis" x="{LEFT - 6}" y="{y(percent) + 4}" '
            f'text-anchor="end">{percent}%</text>'
        )
    for i in range(X_TICKS + 1):
        ts = history.start + span * i / X_TICKS
        anchor = "start" if i == 0 else "end" if i == X_TICKS else "middle"
        out.append(
            f'<text class="axis" x="{x(ts)}" y="{HEIGHT - 10}" text-anchor="{anchor}">'
            f"{escape(_time_label(ts, span))}</text>"
        )
    line = " ".join(f"{x(t)},{y(p)}" for t, p in history.points)
    base = f"{x(history.points[-1][0])},{y(0)} {x(history.points[0][0])},{y(0)}"
    out.append(f'<polygon class="area" points="{line} {base}"/>')
    out.append(f'<polyline class="ramp" points="{line}"/>')
    now_x, now_y = x(history.points[-1][0]), y(history.points[-1][1])
    out.append(f'<circle class="now" cx="{now_x}" cy="{now_y}" r="5"/>')
    for m in history.markers:  # over the present's dot: a change made just now shows
        when = dt.datetime.fromtimestamp(m.at, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        tip = f"{m.action} at {m.percent:.2f} %, {when}, by {m.by}"
        out.append(
            f'<circle class="mark mark-{escape(m.action)}" cx="{x(m.at)}" cy="{y(m.percent)}" '
            f'r="4"><title>{escape(tip)}</title></circle>'
        )
    out.append("</svg>")
    return Markup("".join(out))
