"""Staged plans, the pure part (decision 079): validation that says what is wrong, and
the stage a rollout should be in for every combination of stage, time and verdict."""

from __future__ import annotations

import itertools
import math

import pytest

from nodekeeper.server.rollout_plan import (
    Plan,
    PlanError,
    check_plan,
    decide,
    doubling_stages,
    next_stage_at,
)

PLAN = Plan((1.0, 5.0, 25.0, 100.0), 3600.0)


def test_doubling_is_storjs_guidance():
    stages = doubling_stages()
    assert stages == (1, 2, 4, 8, 16, 32, 64, 100)
    assert all(b == 2 * a for a, b in itertools.pairwise(stages[:-1]))
    Plan(stages, 0.0)  # valid as it stands


@pytest.mark.parametrize(
    ("stages", "soak", "words"),
    [
        ((), 60, ["at least one stage"]),
        ((1, 5, 5, 100), 60, ["strictly ascending", "1,5,5,100"]),
        ((25, 5, 100), 60, ["strictly ascending"]),
        ((1, 5, 25), 60, ["last stage must be 100", "add 100"]),
        ((1, 5, 25, 100), -1, ["soak time must be 0 seconds or more", "-1"]),
        ((0, 50, 100), 60, ["more than 0 and at most 100"]),
        ((1, 50, 120), 60, ["more than 0 and at most 100", "last stage must be 100"]),
        ((1, math.nan, 100), 60, ["finite number"]),
        ((1, math.inf), 60, ["finite number"]),
        ((1, 100), math.nan, ["soak time"]),
        ((1, 100), math.inf, ["soak time"]),
        ((True, 100), 60, ["finite number"]),
        # Several problems at once: every one is named.
        ((50, 10), -5, ["strictly ascending", "last stage must be 100", "soak time"]),
    ],
)
def test_a_bad_plan_says_what_is_wrong(stages, soak, words):
    with pytest.raises(PlanError) as bad:
        check_plan(stages, soak)
    for word in words:
        assert word in str(bad.value)
    with pytest.raises(PlanError):
        Plan(tuple(stages), soak)


@pytest.mark.parametrize("stages", [(100,), (50, 100), (1, 5, 25, 100), (0.5, 99.5, 100)])
def test_good_plans(stages):
    assert Plan(stages, 0.0).last == len(stages) - 1


def test_decide_rejects_what_is_outside_the_plan():
    with pytest.raises(PlanError, match=r"outside the plan's stages 0\.\.3"):
        decide(PLAN, 4, 0.0, 0.0, "continue")
    with pytest.raises(PlanError, match="outside"):
        decide(PLAN, -1, 0.0, 0.0, "continue")
    with pytest.raises(PlanError, match="unknown verdict 'maybe'"):
        decide(PLAN, 0, 0.0, 0.0, "maybe")


def _expected(plan: Plan, stage: int, since: float, now: float, verdict: str | None) -> str:
    """The rule, stated once more in the simplest words: the last stage is never left;
    before the soak ends nothing moves; after it, only "continue" moves on."""
    if stage == plan.last:
        return "done"
    if now < since + plan.soak_seconds:
        return "hold"
    return "advance" if verdict == "continue" else "hold"


def test_every_stage_time_and_verdict():
    """Exhaustive over the plan's stages, instants around the soak's end and verdicts."""
    since = 1000.0
    soak = PLAN.soak_seconds
    instants = [since - 1, since, since + soak - 0.001, since + soak, since + soak + 1, 1e12]
    seen = set()
    for stage, now, verdict in itertools.product(
        range(len(PLAN.stages)), instants, ["continue", "pause", None]
    ):
        step = decide(PLAN, stage, since, now, verdict)
        assert step.kind == _expected(PLAN, stage, since, now, verdict), (stage, now, verdict)
        seen.add(step.kind)
        if step.kind == "advance":
            assert step.stage == stage + 1
            assert step.next_stage_at == (None if step.stage == PLAN.last else now + soak), (
                "the next stage soaks from now"
            )
            assert f"on to {PLAN.stages[stage + 1]:g} %" in step.why
        elif step.kind == "hold":
            assert step.stage == stage and step.next_stage_at == since + soak
        else:
            assert step.stage == PLAN.last and step.next_stage_at is None
    assert seen == {"advance", "hold", "done"}


def test_a_hold_says_why():
    assert "soaks for 600 s more" in decide(PLAN, 0, 0.0, 3000.0, "continue").why
    assert "the health check says pause" in decide(PLAN, 1, 0.0, 4000.0, "pause").why
    assert "no health verdict yet" in decide(PLAN, 1, 0.0, 4000.0, None).why
    assert "stage 2 of 4 (5 %)" in decide(PLAN, 1, 0.0, 4000.0, None).why


def test_zero_soak_moves_on_at_the_first_continue():
    plan = Plan((10.0, 100.0), 0.0)
    assert decide(plan, 0, 50.0, 50.0, "continue").kind == "advance"
    assert decide(plan, 0, 50.0, 50.0, "pause").kind == "hold"


def test_walking_a_plan_one_stage_per_soak():
    """Driving decide() as the health loop does: a good release passes one stage per
    soak, never two at once, and ends at the last stage."""
    stage, since, now, path = 0, 0.0, 0.0, [0]
    while True:
        now += 60.0  # the health interval
        step = decide(PLAN, stage, since, now, "continue")
        if step.kind == "done":
            break
        if step.kind == "advance":
            assert now - since >= PLAN.soak_seconds
            stage, since = step.stage, now
            path.append(stage)
    assert path == [0, 1, 2, 3]
    assert now == pytest.approx(3 * PLAN.soak_seconds + 60.0)


def test_next_stage_at():
    assert next_stage_at(PLAN, 0, 10.0) == 3610.0
    assert next_stage_at(PLAN, 3, 10.0) is None
