"""Staged rollout plans: which stage a rollout is in, and when it moves on (decision 079).

Pure: no clock, no database. A plan is a list of ascending percentages ending at 100 and
a soak time. A stage is held at least ``soak_seconds`` from the moment it began
(``stage_since``); after that it moves to the next stage only when the latest health
verdict says "continue". A "pause" verdict never moves a stage (the wiring pauses the
rollout instead), and the last stage (100 %) is never left.

``doubling_stages()`` is Storj's data-science guidance for its own rollouts: double the
share of nodes at each step (1, 2, 4, ..., 64 %), then everyone.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

StepKind = Literal["hold", "advance", "done"]


class PlanError(ValueError):
    """A plan that cannot be followed; the message says what is wrong and what to give."""


def doubling_stages() -> tuple[float, ...]:
    """1, 2, 4, 8, 16, 32, 64, 100: each stage doubles the nodes of the one before."""
    return (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 100.0)


@dataclass(frozen=True)
class Plan:
    stages: tuple[float, ...]
    soak_seconds: float

    def __post_init__(self) -> None:
        check_plan(self.stages, self.soak_seconds)

    @property
    def last(self) -> int:
        return len(self.stages) - 1

    def percent(self, stage: int) -> float:
        return self.stages[stage]


def check_plan(stages: Sequence[float], soak_seconds: float) -> None:
    """Raise PlanError naming every problem of ``stages`` and ``soak_seconds``."""
    problems: list[str] = []
    values = list(stages)
    if not values:
        problems.append("give at least one stage, e.g. 1,5,25,100")
    elif not all(_is_number(v) for v in values):
        problems.append(f"every stage must be a finite number of percent; got {values}")
    else:
        if any(not 0 < v <= 100 for v in values):
            problems.append(f"each stage must be more than 0 and at most 100 percent; got {values}")
        rising = all(b > a for a, b in itertools.pairwise(values))
        if not rising:
            problems.append(
                f"stages must be strictly ascending (each larger than the one before); "
                f"got {_show(values)}"
            )
        if values[-1] != 100:
            problems.append(
                f"the last stage must be 100 (the plan ends with every node); "
                f"got {_show(values)}, add 100"
            )
    if not _is_number(soak_seconds) or soak_seconds < 0:
        problems.append(
            f"the soak time must be 0 seconds or more (e.g. 6h = 21600); got {soak_seconds!r}"
        )
    if problems:
        raise PlanError("; ".join(problems))


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _show(values: Sequence[float]) -> str:
    return ",".join(f"{v:g}" for v in values)


@dataclass(frozen=True)
class Step:
    """What to do with a staged rollout now. ``stage`` is the stage to be in (the next one
    when advancing); ``next_stage_at`` is the earliest time the stage may be left (None at
    the last stage)."""

    kind: StepKind
    stage: int
    why: str
    next_stage_at: float | None


def next_stage_at(plan: Plan, stage: int, stage_since: float) -> float | None:
    """When ``stage`` has soaked long enough to be left; None for the last stage."""
    if stage >= plan.last:
        return None
    return stage_since + plan.soak_seconds


def decide(plan: Plan, stage: int, stage_since: float, now: float, verdict: str | None) -> Step:
    """The stage a running staged rollout should be in at ``now``.

    ``verdict`` is the latest health action ("continue" or "pause"), or None when no
    verdict is known yet (then nothing moves: a stage is left only on a "continue").
    """
    if not 0 <= stage <= plan.last:
        raise PlanError(f"stage {stage} is outside the plan's stages 0..{plan.last}")
    if verdict not in ("continue", "pause", None):
        raise PlanError(f"unknown verdict {verdict!r}: expected 'continue', 'pause' or None")
    if stage == plan.last:
        return Step("done", stage, f"at the last stage, {plan.percent(stage):g} %", None)
    due = stage_since + plan.soak_seconds
    here = f"stage {stage + 1} of {len(plan.stages)} ({plan.percent(stage):g} %)"
    if now < due:
        left = due - now
        return Step("hold", stage, f"{here} soaks for {left:.0f} s more", due)
    if verdict != "continue":
        because = "no health verdict yet" if verdict is None else "the health check says pause"
        return Step("hold", stage, f"{here} has soaked, but {because}", due)
    after = stage + 1
    return Step(
        "advance",
        after,
        f"{here} soaked {plan.soak_seconds:g} s and the health check says continue: "
        f"on to {plan.percent(after):g} %",
        next_stage_at(plan, after, now),
    )
