"""One round of the health check over every running rollout (decisions 078, 079).

Each replica runs ``check_rollouts`` in a worker thread every ``health_interval`` seconds
(server/app.py). For each process whose rollout is running (not paused, complete or
aborted) it counts the rolling-out version (the candidate, since the rollout started)
and the fleet's version (the baseline, over the same window) from the reports, asks the
pure rule (``rollout_health.judge``), stores the judgement for `rollout status`, and then:

- on "pause", pauses the rollout with a conditional UPDATE (``Store.auto_pause``): with
  several replicas only one UPDATE changes the row, and only that replica audits it and
  gets an ``Event`` back to alert the operator;
- on "continue" with a staged plan, moves to the next stage once the current one has
  soaked (``rollout_plan.decide``; ``Store.advance_stage``, once across replicas too).

Returns what this replica did; the caller alerts and refreshes the announcement.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from . import ramp, rollout_plan
from .models import ProcessRecord, RolloutRecord
from .rollout_counts import count_version
from .rollout_health import HealthRule, Verdict, judge
from .store import Store

log = logging.getLogger("nodekeeper.server.health")


@dataclass(frozen=True)
class Event:
    """Something this replica changed: an auto-pause (``kind`` "pause", with the
    verdict and the deciding reports) or a stage change (``kind`` "stage")."""

    kind: str
    process: str
    version: str
    why: str
    verdict: Verdict
    detail: dict[str, Any]


def pause_numbers(verdict: Verdict) -> dict[str, Any]:
    """The contract's ``pause.numbers``."""
    return {
        "candidate": verdict.candidate.version,
        "updated": verdict.candidate.updated,
        "failed": verdict.candidate.failed,
        "rate": round(verdict.candidate_rate, 6),
        "baseline": verdict.baseline.version,
        "baseline_rate": round(verdict.baseline_rate, 6),
        "p_value": verdict.p_value,
    }


def judge_rollout(
    store: Store, process: ProcessRecord, rollout: RolloutRecord, rule: HealthRule
) -> tuple[Verdict, list[dict[str, Any]]]:
    """The verdict on ``rollout`` now, and the deciding reports (≤ 10)."""
    since = rollout.started_at
    with store.engine.connect() as conn:
        candidate = count_version(
            conn, process.name, rollout.version, since, rollout.forgive_before
        )
        baseline = count_version(conn, process.name, process.fleet_version, since)
    return judge(candidate.counts, baseline.counts, rule), candidate.deciding


def check_rollouts(store: Store, rule: HealthRule, now: float) -> list[Event]:
    events: list[Event] = []
    for process in store.snapshot(now).processes.values():
        rollout = process.served_rollout
        if rollout is None or ramp.phase(rollout.ramp, now) != "running":
            continue
        if rollout.version == process.fleet_version:
            continue  # the fleet's own version (a rollout of the minimum): nothing to compare
        try:
            event = _check_one(store, process, rollout, rule, now)
        except Exception:  # one process's trouble must not stop the others' checks
            log.exception("health check of %s %s failed", process.name, rollout.version)
            continue
        if event is not None:
            events.append(event)
    return events


def _check_one(
    store: Store, process: ProcessRecord, rollout: RolloutRecord, rule: HealthRule, now: float
) -> Event | None:
    verdict, deciding = judge_rollout(store, process, rollout, rule)
    store.record_health(
        rollout.id,
        {
            "action": verdict.action,
            "why": verdict.why,
            "updated": verdict.candidate.updated,
            "failed": verdict.candidate.failed,
            "at": now,
        },
        now=now,
    )
    if verdict.paused:
        detail = {"numbers": pause_numbers(verdict), "reports": deciding}
        if store.auto_pause(rollout, why=verdict.why, detail=detail, now=now):
            log.warning("paused the rollout of %s: %s", process.name, verdict.why)
            return Event("pause", process.name, rollout.version, verdict.why, verdict, detail)
        return None
    if rollout.plan is None or rollout.stage is None or rollout.stage_since is None:
        return None
    step = rollout_plan.decide(
        rollout.plan, rollout.stage, rollout.stage_since, now, verdict.action
    )
    if step.kind != "advance":
        return None
    if store.advance_stage(rollout, step.stage, why=step.why, now=now):
        log.info("rollout of %s %s: %s", process.name, rollout.version, step.why)
        detail = {"stage_before": rollout.stage, "stage_after": step.stage}
        return Event("stage", process.name, rollout.version, step.why, verdict, detail)
    return None
