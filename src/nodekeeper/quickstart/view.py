"""What the operator sees: events found by comparing snapshots, and the live screen.

``status_changes`` is pure (two keeper snapshots in, sentences out); ``render`` turns the
current picture into a rich renderable. Neither does I/O.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text


@dataclass
class Event:
    at: float
    text: str
    level: str = "info"


@dataclass
class Feed:
    """The newest events, shown newest last."""

    events: deque[Event] = field(default_factory=lambda: deque(maxlen=14))
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


def _rollout_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="control plane", title_justify="left", expand=True)
    for column in ("process", "minimum", "target", "percent", "state", "nodes by version"):
        table.add_column(column)
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


def _keeper_table(status: dict[str, Any] | None) -> Table:
    table = Table(title="keeper", title_justify="left", show_header=False)
    table.add_column(style="bold", width=18)
    table.add_column()
    if status is None:
        table.add_row("state", "starting the keeper ...")
        return table
    update = _update(status)
    installed = update.get("current") or "nothing yet"
    if update.get("previous"):
        installed += f" (previous {update['previous']})"
    step = f"to {update.get('target')}: {update['step']}" if update.get("step") else "idle"
    pulse = status.get("last_pulse") or {}
    for label, value in (
        ("node", f"{status['state']}, pid {status['pid'] or '-'}"),
        ("version running", status.get("version") or "-"),
        ("installed", installed),
        ("updating", step),
        ("restarts", str(status.get("restarts", 0))),
        ("last pulse", "ok" if pulse.get("ok") else (pulse.get("detail") or "-")),
    ):
        table.add_row(label, value)
    return table


def _events_table(feed: Feed) -> Table:
    table = Table(title="events", title_justify="left", show_header=False, expand=True)
    table.add_column(width=8, style="dim")
    table.add_column()
    for event in feed.events:
        style = {"error": "bold red", "warning": "yellow"}.get(event.level, "")
        table.add_row(time.strftime("%H:%M:%S", time.localtime(event.at)), Text(event.text, style))
    return table


def render(
    rollouts: list[dict[str, Any]], keeper: dict[str, Any] | None, feed: Feed, hint: str
) -> Group:
    return Group(
        _rollout_table(rollouts),
        _keeper_table(keeper),
        _events_table(feed),
        Text(hint, style="dim"),
    )
