"""The rollout status of one process, as the admin API and `rollout status` show it."""

from __future__ import annotations

from typing import Any

from . import ramp
from .models import ProcessRecord


def process_status(process: ProcessRecord, now: float) -> dict[str, Any]:
    rollout = process.rollout
    row: dict[str, Any] = {
        "process": process.name,
        "minimum": process.minimum,
        "suggested": process.last_completed,
        "target": rollout.version if rollout else None,
        "percent": None,
        "state": "none",
        "rate_per_day": None,
        "started_at": None,
        "eta_complete": None,
        "versions": process.sorted_versions(),
    }
    if rollout is not None:
        row.update(
            percent=round(ramp.percent_at(rollout.ramp, now), 4),
            state=ramp.phase(rollout.ramp, now),
            rate_per_day=rollout.ramp.rate_per_day,
            started_at=rollout.started_at,
            eta_complete=ramp.eta_complete(rollout.ramp, now),
        )
    return row
