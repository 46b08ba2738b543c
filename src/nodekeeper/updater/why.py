"""What the updater decided and why, as plain data for the log, the status and
`nodekeeper update check` (pure).

A decision summary is a dict (it goes into the status JSON as ``update.decision``)::

    {"code": "waiting-for-rollout", "target": null, "skipped": null,
     "reason": "the rollout of 1.3.0 has not reached this node yet",
     "current": "1.2.0", "minimum": "1.2.0", "suggested": "1.3.0",
     "rollout": {"percent": 40.0, "position": 73.7, "rate_per_day": 10.0,
                 "eta_seconds": 28080.0},
     "at": 1764662400.0}

``rollout`` is null when the announcement has no rollout; ``position`` is null while the
node has no identity (its place cannot be computed). ``decision_key`` is what "the
decision changed" means: the rollout's progress is not part of it, so a ramp moving
every check does not make a new log line every check.
"""

from __future__ import annotations

from typing import Any

from nodekeeper.version.decision import RolloutPosition, rollout_position
from nodekeeper.version.rollout import cursor_to_percentage
from nodekeeper.version.schema import ProcessAnnouncement
from nodekeeper.version.versions import normalize_version

NOT_ANNOUNCED = "not-announced"
NO_ARTIFACT = "no-artifact"
KEY_FIELDS = ("code", "target", "skipped", "current", "minimum", "suggested")


def summarize(
    *,
    code: str,
    reason: str,
    current: str | None,
    entry: ProcessAnnouncement | None,
    node_id: bytes | None,
    at: float,
    target: str | None = None,
    skipped: str | None = None,
) -> dict[str, Any]:
    """The summary of one decision; ``node_id`` None: the node has no identity yet."""
    return {
        "code": code,
        "target": target,
        "skipped": skipped,
        "reason": reason,
        "current": current,
        "minimum": normalize_version(entry.minimum.version) if entry else None,
        "suggested": normalize_version(entry.suggested.version) if entry else None,
        "rollout": _rollout(entry, node_id),
        "at": at,
    }


def _rollout(entry: ProcessAnnouncement | None, node_id: bytes | None) -> dict[str, Any] | None:
    if entry is None or not entry.rollout.active:
        return None
    if node_id is None:
        percent = cursor_to_percentage(bytes.fromhex(entry.rollout.cursor))
        return {
            "percent": percent,
            "position": None,
            "rate_per_day": entry.rollout.rate_per_day,
            "eta_seconds": None,
        }
    position = rollout_position(entry, node_id)
    assert position is not None
    return rollout_dict(position)


def rollout_dict(position: RolloutPosition) -> dict[str, Any]:
    return {
        "percent": round(position.percent, 4),
        "position": round(position.position, 4),
        "rate_per_day": position.rate_per_day,
        "eta_seconds": position.eta_seconds(),
    }


def decision_key(summary: dict[str, Any] | None) -> tuple[Any, ...] | None:
    """What must differ for a decision to count as changed."""
    if summary is None:
        return None
    return tuple(summary.get(k) for k in KEY_FIELDS)
