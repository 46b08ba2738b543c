"""What version a node should run, given the announcement: Storj's decision order, plus
what to do when the version that order names cannot be used here (pure).

Storj's order: up to date → nothing; below the minimum → the minimum (no rollout check);
rollout candidate → suggested; else nothing. On top of it, a version may be *unusable*
on this node (it failed here before, or has no artifact for this platform); the caller
says which. The order then decides among everything announced:

- below the minimum, with the minimum unusable: the suggested version, rollout or not.
  Below the minimum the node gets no traffic anyway, so waiting for the rollout only
  keeps it useless; a fresh node with a broken minimum would otherwise install nothing
  until an operator stepped in;
- otherwise an unusable target means staying put (``skipped`` names it, once reported).

Every decision carries a ``code`` (stable, for "did the decision change?") and a human
``reason``; ``explain_rollout`` says where this node stands in a rollout.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .rollout import cursor_to_percentage, is_rollout_candidate, rollout_hash
from .schema import ProcessAnnouncement
from .versions import normalize_version, parse_version

# Decision codes (stable strings: the status API carries them).
UP_TO_DATE = "up-to-date"
AHEAD = "ahead"  # the announcement is below what is installed: never go backwards
MINIMUM = "below-minimum"
SUGGESTED_OVER_BAD_MINIMUM = "bad-minimum-takes-suggested"
IN_ROLLOUT = "in-rollout"
WAITING_FOR_ROLLOUT = "waiting-for-rollout"
SKIPPED = "skipped-unusable"


@dataclass(frozen=True)
class UpdateDecision:
    """``target`` is None when the node should stay where it is; ``skipped`` is the
    version the order named but that is unusable here (``unusable[skipped]`` says why)."""

    target: str | None
    reason: str
    code: str = UP_TO_DATE
    skipped: str | None = None


@dataclass(frozen=True)
class RolloutPosition:
    """Where a node stands in a rollout: it is included once ``percent`` reaches
    ``position``. ``rate_per_day`` is the ramp's speed when the control plane says so."""

    percent: float
    position: float
    rate_per_day: float | None = None

    @property
    def included(self) -> bool:
        return self.position <= self.percent

    def eta_seconds(self) -> float | None:
        """Seconds until the ramp reaches this node at its current rate (0 when it
        already has; None when the ramp does not move on its own)."""
        if self.included:
            return 0.0
        if not self.rate_per_day or self.rate_per_day <= 0:
            return None
        return (self.position - self.percent) / self.rate_per_day * 86_400.0


def node_position(node_id: bytes, seed: bytes) -> float:
    """This node's place in a rollout with ``seed``, in percent: the rollout admits it
    once its percentage reaches this value (the HMAC read as a cursor)."""
    return cursor_to_percentage(rollout_hash(node_id, seed))


def rollout_position(process: ProcessAnnouncement, node_id: bytes) -> RolloutPosition | None:
    """The node's position in ``process``'s rollout, or None when there is no rollout."""
    rollout = process.rollout
    if not rollout.active:
        return None
    return RolloutPosition(
        percent=cursor_to_percentage(bytes.fromhex(rollout.cursor)),
        position=node_position(node_id, bytes.fromhex(rollout.seed)),
        rate_per_day=rollout.rate_per_day,
    )


def choose(
    current: str,
    minimum: str,
    suggested: str,
    *,
    candidate: bool,
    unusable: Mapping[str, str],
) -> UpdateDecision:
    """The decision table. ``unusable`` maps normalised versions to why they cannot be
    installed here; ``candidate`` is whether the rollout includes this node."""
    now, low, high = parse_version(current), parse_version(minimum), parse_version(suggested)
    minimum, suggested = normalize_version(minimum), normalize_version(suggested)
    if now >= high:
        if now > high:
            return UpdateDecision(
                None,
                f"the control plane announces minimum {minimum} and suggested {suggested}, "
                f"below the installed {current}: not going backwards",
                AHEAD,
            )
        return UpdateDecision(None, f"{current} is up to date (suggested {suggested})")
    if now < low:
        if minimum not in unusable:
            return UpdateDecision(minimum, f"{current} is below the minimum {minimum}", MINIMUM)
        if suggested not in unusable:
            return UpdateDecision(
                suggested,
                f"{current} is below the minimum {minimum}, which {unusable[minimum]}; taking "
                f"the suggested {suggested} without waiting for the rollout (below the "
                "minimum the node gets no traffic anyway)",
                SUGGESTED_OVER_BAD_MINIMUM,
            )
        return UpdateDecision(
            None,
            f"{current} is below the minimum {minimum}, which {unusable[minimum]}, and the "
            f"suggested {suggested} {unusable[suggested]}; waiting for a newer version",
            SKIPPED,
            skipped=minimum,
        )
    if not candidate:
        return UpdateDecision(
            None,
            f"the rollout of {suggested} has not reached this node yet",
            WAITING_FOR_ROLLOUT,
        )
    if suggested in unusable:
        return UpdateDecision(
            None,
            f"this node is in the rollout of {suggested}, which {unusable[suggested]}; "
            "waiting for a newer version",
            SKIPPED,
            skipped=suggested,
        )
    return UpdateDecision(suggested, f"this node is in the rollout of {suggested}", IN_ROLLOUT)


def decide_update(
    current: str,
    process: ProcessAnnouncement,
    node_id: bytes,
    unusable: Mapping[str, str] | None = None,
) -> UpdateDecision:
    """Storj's order over ``process``, with ``unusable`` versions decided around."""
    rollout = process.rollout
    candidate = rollout.active and is_rollout_candidate(
        node_id, bytes.fromhex(rollout.seed), bytes.fromhex(rollout.cursor)
    )
    return choose(
        current,
        process.minimum.version,
        process.suggested.version,
        candidate=candidate,
        unusable={normalize_version(v): why for v, why in (unusable or {}).items()},
    )
