"""What the operator sees: events found by comparing snapshots, and the live screen.

``status_changes`` is pure (two keeper snapshots in, sentences out); ``render`` turns the
current picture into a rich renderable. Neither does I/O.

The screen is built to a line budget: it must fit the terminal it is shown in, down to
a standard 80×24, because ``rich.live`` crops whatever does not fit from the bottom,
which is exactly where the newest events and the "done" line are. Every line is one
terminal line (no wrapping: long text ends in "…"; the full text is in the keeper's
log and in ``--plain``), so the height is known before rendering, and the events get
whatever rows the fixed part leaves, newest last.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

# Enough to fill a tall terminal; a short one shows the newest that fit.
FEED_LENGTH = 60
# Rows of the screen that are not events: control plane title and table header, three
# keeper lines, the headline, the events title, the hint, and the terminal's cursor line
# (rich.live leaves the cursor below the frame; a frame as tall as the terminal scrolls).
FIXED_ROWS = 2 + 3 + 1 + 1 + 1 + 1
MIN_EVENT_ROWS = 1


@dataclass
class Event:
    at: float
    text: str
    level: str = "info"


@dataclass
class Feed:
    """The newest events, shown newest last."""

    events: deque[Event] = field(default_factory=lambda: deque(maxlen=FEED_LENGTH))
    _unread: list[Event] = field(default_factory=list)

    def add(self, text: str, level: str = "info", at: float | None = None) -> Event:
        event = Event(time.time() if at is None else at, text, level)
        self.events.append(event)
        self._unread.append(event)
        return event

    def take_unread(self) -> list[Event]:
        """Events added since the last call (plain mode prints each once)."""
        unread, self._unread = self._unread, []
        return unread


def _update(status: dict[str, Any] | None) -> dict[str, Any]:
    return (status or {}).get("update") or {}


def status_changes(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[str]:
    """What changed between two keeper snapshots, in words."""
    if after is None:
        return ["the keeper is not answering"] if before is not None else []
    if before is None:
        return [f"keeper answering: node {after['state']}"]
    changes = []
    if after["state"] != before["state"]:
        changes.append(f"node {before['state']} -> {after['state']}")
    if after.get("version") != before.get("version") and after.get("version"):
        changes.append(f"node reports version {after['version']}")
    if after.get("restarts", 0) > before.get("restarts", 0):
        changes.append(f"node restarted ({after['restarts']} restarts so far)")
    old, new = _update(before), _update(after)
    if new.get("step") != old.get("step") and new.get("step"):
        changes.append(f"update to {new.get('target')}: {new['step']}")
    if new.get("last_outcome") != old.get("last_outcome") and new.get("last_outcome"):
        outcome = new["last_outcome"]
        changes.append(f"update {outcome['outcome']}: {outcome['message']}")
    if new.get("held") and not old.get("held"):
        changes.append(f"UPDATE HELD: {new['held']['message']}")
    return changes


def _line(text: str | Text, style: str = "") -> Text:
    """One terminal line whatever the width: cut with "…" instead of wrapping."""
    line = text if isinstance(text, Text) else Text(text, style=style)
    line.no_wrap = True
    line.overflow = "ellipsis"
    return line


def _grid(*widths: int | None) -> Table:
    """A borderless table whose cells never wrap (one row = one line)."""
    table = Table.grid(padding=(0, 1), expand=True)
    for width in widths:
        table.add_column(width=width, no_wrap=True, overflow="ellipsis", ratio=None if width else 1)
    return table


def _rollout_rows(rows: list[dict[str, Any]]) -> Table:
    table = Table(box=None, padding=(0, 1), pad_edge=False, expand=True, header_style="bold dim")
    for column, width in (
        ("process", 11),
        ("minimum", 8),
        ("target", 8),
        ("percent", 7),
        ("state", 9),
        ("nodes by version", None),
    ):
        table.add_column(
            column, width=width, no_wrap=True, overflow="ellipsis", ratio=None if width else 1
        )
    for row in rows:
        seen = ", ".join(
            f"{version}: {info['nodes']}"
            + (f" ({info['failures']} failed)" if info["failures"] else "")
            for version, info in sorted(row.get("reported", {}).items())
        )
        percent = "-" if row["percent"] is None else f"{row['percent']:.0f} %"
        table.add_row(
            row["process"], row["minimum"], row["target"] or "-", percent, row["state"], seen or "-"
        )
    return table


def keeper_lines(status: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The keeper's three lines, label and text (pure)."""
    if status is None:
        return [("node", "starting the keeper ..."), ("version", "-"), ("update", "-")]
    update = _update(status)
    pulse = status.get("last_pulse") or {}
    pulse_text = "ok" if pulse.get("ok") else (pulse.get("detail") or "-")
    node = (
        f"{status['state']}, pid {status['pid'] or '-'}, "
        f"{status.get('restarts', 0)} restarts, pulse {pulse_text}"
    )
    installed = update.get("current") or "nothing yet"
    if update.get("previous"):
        installed += f" (previous {update['previous']})"
    version = f"runs {status.get('version') or '-'}, installed {installed}"
    if update.get("held"):
        step = f"HELD: {update['held'].get('message', '')}"
    elif update.get("step"):
        step = f"to {update.get('target')}: {update['step']}"
    else:
        step = "idle"
    return [("node", node), ("version", version), ("update", step)]


def _keeper_grid(status: dict[str, Any] | None) -> Table:
    table = _grid(8, None)
    for label, value in keeper_lines(status):
        style = "bold red" if value.startswith("HELD") else ""
        table.add_row(Text(label, style="bold"), Text(value, style=style))
    return table


def _events_grid(events: list[Event]) -> Table:
    table = _grid(8, None)
    for event in events:
        style = {"error": "bold red", "warning": "yellow"}.get(event.level, "")
        table.add_row(
            Text(time.strftime("%H:%M:%S", time.localtime(event.at)), style="dim"),
            Text(event.text, style=style),
        )
    return table


def event_rows(rows: int, processes: int) -> int:
    """How many events fit in ``rows`` terminal lines beside the fixed part (pure)."""
    return max(MIN_EVENT_ROWS, rows - FIXED_ROWS - max(processes, 1))


def render(
    rollouts: list[dict[str, Any]],
    keeper: dict[str, Any] | None,
    feed: Feed,
    hint: str,
    *,
    headline: str,
    rows: int,
    control_plane: str = "",
) -> Group:
    """The whole screen in at most ``rows`` lines (for any width: nothing wraps).

    ``headline`` is the demo's current phase ("done: ..." at the end): always on screen,
    so the end is visible even when events keep arriving."""
    shown = list(feed.events)[-event_rows(rows, len(rollouts)) :]
    done = headline.startswith("done")
    return Group(
        _line(Text.assemble(("control plane ", "bold"), (control_plane, "dim"))),
        _rollout_rows(rollouts),
        _keeper_grid(keeper),
        _line(headline, "bold green" if done else "bold"),
        _line("events", "bold"),
        _events_grid(shown),
        _line(hint, "dim"),
    )
