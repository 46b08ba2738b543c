"""One alert: what went wrong, how bad, and what the operator can do about it.

The fields follow the error index's entries (``nodekeeper.logs.error_index``): a time, a
level and a message, plus what a notification needs and an index line does not: a kind
to debounce on, a short title for a phone's lock screen and the fix in words.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

# The kinds the keeper and the control plane raise today; others are allowed (a kind is
# only a debounce key and a tag), these are the ones the tray will have words for.
KINDS = (
    "crash_loop",
    "update_failed",
    "firewall_blocked",
    "disk_full",
    "storage_missing",
    "node_offline",
    "control_plane_unreachable",
    # The keeper's storage watch (decision 070).
    "clock_off",
    "identity_missing",
)

Severity = Literal["info", "warning", "error", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "error", "critical")


@dataclass(frozen=True)
class Alert:
    kind: str
    severity: Severity
    title: str
    message: str
    fix: str = ""
    node_id: str | None = None
    # UNIX seconds, as in the error index.
    time: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if not self.kind or not self.kind.replace("_", "").isalnum():
            raise ValueError(f"alert kind must be letters, digits and _ (got {self.kind!r})")
        if self.severity not in SEVERITIES:
            raise ValueError(f"alert severity must be one of {', '.join(SEVERITIES)}")

    @property
    def key(self) -> str:
        """What debouncing counts by: the kind, per node when the alert names one (the
        control plane may alert about many nodes; one node's crash loop must not hide
        another's)."""
        return self.kind if self.node_id is None else f"{self.node_id}/{self.kind}"

    def iso_time(self) -> str:
        return datetime.fromtimestamp(self.time, UTC).isoformat(timespec="seconds")

    def to_json(self) -> dict[str, Any]:
        """The webhook's body: every field, plus ``time`` as ISO 8601 in UTC beside the
        UNIX ``timestamp`` (the error index's two names for the same instant)."""
        return {
            "kind": self.kind,
            "severity": self.severity,
            "title": self.title,
            "message": self.message,
            "fix": self.fix,
            "node_id": self.node_id,
            "timestamp": self.time,
            "time": self.iso_time(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Alert:
        return cls(
            kind=data["kind"],
            severity=data["severity"],
            title=data["title"],
            message=data["message"],
            fix=data.get("fix", ""),
            node_id=data.get("node_id"),
            time=float(data["timestamp"]),
        )

    def text(self) -> str:
        """The plain-text body of a push or an e-mail: the message, then the fix."""
        parts = [self.message]
        if self.fix:
            parts.append(f"Fix: {self.fix}")
        if self.node_id:
            parts.append(f"Node: {self.node_id}")
        parts.append(f"Time: {self.iso_time()}")
        return "\n\n".join(parts)
