"""The rollout status of one process, as the admin API and `rollout status` show it.

Besides the ramp, a row says why a rollout is paused (``pause``: the health check's
verdict with its numbers and deciding reports, or the operator), its staged ``plan`` and
the latest ``health`` judgement (decisions 078, 079; the shared contract of issue 14).
"""

from __future__ import annotations

from typing import Any

from . import ramp, rollout_plan
from .models import ProcessRecord, RolloutRecord


def rollout_state(rollout: RolloutRecord | None, now: float) -> str:
    """ "none" | "running" | "paused" | "complete" | "aborted"."""
    if rollout is None:
        return "none"
    if rollout.aborted:
        return "aborted"
    return ramp.phase(rollout.ramp, now)


def _pause(rollout: RolloutRecord, state: str) -> dict[str, Any] | None:
    pause = rollout.pause
    if pause is None or state != "paused":  # set to 100 % while paused: complete
        return None
    return {
        "by": pause.by,
        "at": pause.at,
        "why": pause.why,
        "numbers": pause.detail.get("numbers"),
        "reports": pause.detail.get("reports", []),
    }


def _plan(rollout: RolloutRecord) -> dict[str, Any] | None:
    plan = rollout.plan
    if plan is None or rollout.stage is None or rollout.stage_since is None:
        return None
    due = None
    if not rollout.aborted and not rollout.ramp.paused:
        due = rollout_plan.next_stage_at(plan, rollout.stage, rollout.stage_since)
    return {
        "stages": list(plan.stages),
        "soak_seconds": plan.soak_seconds,
        "stage": rollout.stage,
        "stage_since": rollout.stage_since,
        "next_stage_at": due,
    }


def _health(rollout: RolloutRecord) -> dict[str, Any] | None:
    health = rollout.health
    if health is None:
        return None
    return {k: health[k] for k in ("action", "why", "updated", "failed") if k in health}


def process_status(process: ProcessRecord, now: float) -> dict[str, Any]:
    rollout = process.rollout
    row: dict[str, Any] = {
        "process": process.name,
        "minimum": process.minimum,
        "suggested": process.last_completed,
        "target": rollout.version if rollout else None,
        "percent": None,
        "state": rollout_state(rollout, now),
        "rate_per_day": None,
        "started_at": None,
        "eta_complete": None,
        "versions": process.sorted_versions(),
        "pause": None,
        "plan": None,
        "health": None,
    }
    if rollout is not None:
        row.update(
            percent=round(ramp.percent_at(rollout.ramp, now), 4),
            rate_per_day=rollout.ramp.rate_per_day,
            started_at=rollout.started_at,
            eta_complete=None if rollout.aborted else ramp.eta_complete(rollout.ramp, now),
            pause=_pause(rollout, row["state"]),
            plan=_plan(rollout),
            health=_health(rollout),
        )
    return row
