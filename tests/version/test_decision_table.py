"""The update decision as a table: every combination of where the node is (against the
minimum 1.2.0 and the suggested 1.3.0), whether the minimum and the suggested version are
usable here, and whether the rollout includes the node."""

from __future__ import annotations

import itertools
import json

import pytest

from nodekeeper.version.decision import (
    AHEAD,
    IN_ROLLOUT,
    MINIMUM,
    SKIPPED,
    SUGGESTED_OVER_BAD_MINIMUM,
    UP_TO_DATE,
    WAITING_FOR_ROLLOUT,
    choose,
    decide_update,
)
from nodekeeper.version.rollout import percentage_to_cursor
from nodekeeper.version.schema import parse_announcement

MINIMUM_V, SUGGESTED_V = "1.2.0", "1.3.0"
CURRENTS = ("0.0.0", "1.1.0", "1.2.0", "1.2.5", "1.3.0", "1.4.0")
WHERE = {
    "0.0.0": "below",  # fresh node, nothing installed
    "1.1.0": "below",
    "1.2.0": "between",  # at the minimum
    "1.2.5": "between",
    "1.3.0": "at",
    "1.4.0": "ahead",
}
BAD = "failed on this node before"

# where, candidate, minimum bad, suggested bad → target, code, skipped ("*": any)
TABLE: list[tuple[str, object, object, object, str | None, str, str | None]] = [
    ("below", "*", False, "*", MINIMUM_V, MINIMUM, None),
    ("below", "*", True, False, SUGGESTED_V, SUGGESTED_OVER_BAD_MINIMUM, None),
    ("below", "*", True, True, None, SKIPPED, MINIMUM_V),
    ("between", False, "*", "*", None, WAITING_FOR_ROLLOUT, None),
    ("between", True, "*", False, SUGGESTED_V, IN_ROLLOUT, None),
    ("between", True, "*", True, None, SKIPPED, SUGGESTED_V),
    ("at", "*", "*", "*", None, UP_TO_DATE, None),
    ("ahead", "*", "*", "*", None, AHEAD, None),
]

COMBINATIONS = list(itertools.product(CURRENTS, (False, True), (False, True), (False, True)))


def _rows_for(current: str, candidate: bool, min_bad: bool, sug_bad: bool) -> list[tuple]:
    key = (WHERE[current], candidate, min_bad, sug_bad)
    return [row for row in TABLE if all(w in ("*", h) for w, h in zip(row[:4], key, strict=True))]


def test_the_table_covers_every_combination_exactly_once() -> None:
    assert len(COMBINATIONS) == 48
    for combination in COMBINATIONS:
        assert len(_rows_for(*combination)) == 1, combination


@pytest.mark.parametrize(("current", "candidate", "min_bad", "sug_bad"), COMBINATIONS)
def test_decision_table(current: str, candidate: bool, min_bad: bool, sug_bad: bool) -> None:
    ((*_, target, code, skipped),) = _rows_for(current, candidate, min_bad, sug_bad)
    unusable = {v: BAD for v, bad in ((MINIMUM_V, min_bad), (SUGGESTED_V, sug_bad)) if bad}
    decision = choose(current, MINIMUM_V, SUGGESTED_V, candidate=candidate, unusable=unusable)
    assert (decision.target, decision.code, decision.skipped) == (target, code, skipped)
    assert decision.reason  # every decision says why
    if code == SUGGESTED_OVER_BAD_MINIMUM:
        assert f"below the minimum {MINIMUM_V}, which {BAD}" in decision.reason


@pytest.mark.parametrize("bad", [False, True])
def test_minimum_equal_to_suggested(bad: bool) -> None:
    unusable = {"1.3.0": BAD} if bad else {}
    decision = choose("1.0.0", "1.3.0", "1.3.0", candidate=False, unusable=unusable)
    expected = (None, SKIPPED, "1.3.0") if bad else ("1.3.0", MINIMUM, None)
    assert (decision.target, decision.code, decision.skipped) == expected


def test_ahead_of_the_announcement_says_so() -> None:
    decision = choose("1.4.0", "1.2.0", "1.3.0", candidate=True, unusable={})
    assert "below the installed 1.4.0: not going backwards" in decision.reason


def _process(percent: float) -> object:
    doc = {
        "processes": {
            "storagenode": {
                "minimum": {"version": "1.2.0", "url": "https://cp.example/m"},
                "suggested": {"version": "1.3.0", "url": "https://cp.example/s"},
                "rollout": {"seed": "ab" * 32, "cursor": percentage_to_cursor(percent).hex()},
            }
        }
    }
    return parse_announcement(json.dumps(doc)).processes["storagenode"]


@pytest.mark.parametrize("percent", [0, 100])
def test_bad_minimum_takes_suggested_whatever_the_rollout(percent: float) -> None:
    """Fresh node, bad 1.2.0 as minimum, good 1.3.0 suggested: 1.3.0, at 0 % or 100 %,
    with versions spelled either way."""
    decision = decide_update("0.0.0", _process(percent), bytes(32), {"v1.2.0": BAD})
    assert decision.target == "1.3.0"
    assert decision.code == SUGGESTED_OVER_BAD_MINIMUM
