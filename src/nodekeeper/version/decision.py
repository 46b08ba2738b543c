"""What version a node should run, given the announcement: Storj's decision order."""

from __future__ import annotations

from dataclasses import dataclass

from .rollout import is_rollout_candidate
from .schema import ProcessAnnouncement
from .versions import parse_version


@dataclass(frozen=True)
class UpdateDecision:
    """``target`` is None when the node should stay where it is."""

    target: str | None
    reason: str


def decide_update(current: str, process: ProcessAnnouncement, node_id: bytes) -> UpdateDecision:
    """Storj's order: up to date → nothing; below minimum → minimum (no rollout check);
    rollout candidate → suggested; else nothing."""
    now = parse_version(current)
    suggested = parse_version(process.suggested.version)
    minimum = parse_version(process.minimum.version)
    if now >= suggested:
        return UpdateDecision(None, f"{current} is up to date (suggested {suggested})")
    if now < minimum:
        return UpdateDecision(process.minimum.version, f"{current} is below the minimum {minimum}")
    rollout = process.rollout
    if rollout.active and is_rollout_candidate(
        node_id, bytes.fromhex(rollout.seed), bytes.fromhex(rollout.cursor)
    ):
        return UpdateDecision(
            process.suggested.version, f"this node is in the rollout of {suggested}"
        )
    return UpdateDecision(None, f"the rollout of {suggested} has not reached this node yet")
