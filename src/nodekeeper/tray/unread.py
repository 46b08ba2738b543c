"""What the errors list shows and what counts as unread (pure).

The error index's entries (``logs.error_index``) carry ``timestamp``, ``source``,
``level``, ``message`` and extra fields such as ``fix``. The list is newest first; an
entry newer than "last seen" is unread; filters by source and by minimum severity keep
the unread count honest (the count on the icon is of everything unread, whatever the
window's filter shows).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

# The error index's levels, as numbers to compare (logging's).
SEVERITIES = {"WARNING": 30, "ERROR": 40, "CRITICAL": 50}


@dataclass(frozen=True)
class Problem:
    timestamp: float
    time: str
    source: str
    level: str
    message: str
    fix: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def severity(self) -> int:
        return SEVERITIES.get(self.level.upper(), 0)

    def for_forum(self) -> str:
        """The problem as plain text to paste into a forum post or an issue."""
        lines = [f"{self.time}  {self.level}  {self.source}", self.message]
        if self.fix:
            lines.append(f"What to do: {self.fix}")
        lines += [f"{key}: {value}" for key, value in sorted(self.details.items())]
        return "\n".join(lines)


def problems(entries: Iterable[dict[str, Any]]) -> list[Problem]:
    """The index's entries as problems, newest first; entries that lack the index's own
    fields (a damaged line read as far as it could be) are left out."""
    found = []
    for entry in entries:
        try:
            timestamp = float(entry["timestamp"])
            source, level, message = (
                str(entry["source"]),
                str(entry["level"]),
                str(entry["message"]),
            )
        except (KeyError, TypeError, ValueError):
            continue
        reserved = {"timestamp", "time", "source", "level", "message", "fix"}
        details = {k: v for k, v in entry.items() if k not in reserved}
        message, said = readable(message)
        details.update(said)
        found.append(
            Problem(
                timestamp=timestamp,
                time=str(entry.get("time", "")),
                source=source,
                level=level,
                message=message,
                fix=str(entry.get("fix") or ""),
                details=details,
            )
        )
    found.sort(key=lambda p: p.timestamp, reverse=True)
    return found


def readable(message: str) -> tuple[str, dict[str, Any]]:
    """A node's JSON log line (the reference node writes ``{"time", "level", "msg", ...}``)
    as its message, with its other fields as details; any other text as it is. The index
    keeps the line as the node wrote it: this is only how the list shows it."""
    if not message.startswith("{"):
        return message, {}
    try:
        line = json.loads(message)
    except ValueError:
        return message, {}
    if not isinstance(line, dict):
        return message, {}
    text = line.get("msg", line.get("message"))
    if not isinstance(text, str) or not text:
        return message, {}
    other = {f"node {k}": v for k, v in line.items() if k not in ("msg", "message", "level")}
    return text, other


def unread(items: Sequence[Problem], last_seen: float) -> list[Problem]:
    return [p for p in items if p.timestamp > last_seen]


def newest_time(items: Sequence[Problem]) -> float | None:
    """What "last seen" becomes when the operator has looked at ``items``."""
    return max((p.timestamp for p in items), default=None)


def shown(
    items: Sequence[Problem], sources: set[str] | None = None, min_level: str = "WARNING"
) -> list[Problem]:
    """The window's filter: these sources (None: all), at least this severity."""
    floor = SEVERITIES.get(min_level.upper())
    if floor is None:
        raise ValueError(f"unknown severity {min_level!r}: one of {', '.join(SEVERITIES)}")
    return [p for p in items if (sources is None or p.source in sources) and p.severity >= floor]
