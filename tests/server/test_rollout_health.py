"""The rollout health rule (decision 075): exact tail, verdict table, properties, simulation."""

from __future__ import annotations

import itertools
import math
import random
from fractions import Fraction

import pytest

from nodekeeper.server.rollout_health import (
    COUNTED_KINDS,
    IGNORED_KINDS,
    HealthRule,
    VersionCounts,
    binomial_upper_tail,
    counts_against_release,
    judge,
    tally,
)
from nodekeeper.version.reports import ReportKind

RULE = HealthRule()
NEW = "1.5.0"
OLD = "1.4.2"


def counts(updated: int, failed: int, version: str = NEW) -> VersionCounts:
    return VersionCounts(version, updated, failed)


def exact_tails(n: int, p: str) -> list[float]:
    """The oracle: P(X >= k) for k = 0..n+1 in exact rational arithmetic (p a decimal)."""
    q = Fraction(p)
    terms = [math.comb(n, i) * q**i * (1 - q) ** (n - i) for i in range(n + 1)]
    tails, total = [0.0], Fraction(0)
    for term in reversed(terms):
        total += term
        tails.append(float(total))
    return tails[::-1]


# -- the exact binomial tail ------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "n", "p", "known"),
    [
        # Values from the closed form, easy to check by hand.
        (1, 10, 0.5, 1 - 0.5**10),
        (10, 10, 0.5, 0.5**10),
        (7, 7, 0.5, 0.0078125),
        (1, 1000, 0.001, 1 - 0.999**1000),
        (3, 3, 0.02, 0.02**3),
        # P(X >= 6 | 20, 0.05): 3.2929e-4 (R: pbinom(5, 20, 0.05, lower.tail = FALSE)).
        (6, 20, 0.05, 3.2929432452827664e-04),
    ],
)
def test_tail_matches_known_values(k: int, n: int, p: float, known: float) -> None:
    assert binomial_upper_tail(k, n, p) == pytest.approx(known, rel=1e-12)


def test_tail_matches_exact_arithmetic_over_a_grid() -> None:
    for n in (1, 2, 5, 13, 40, 97, 200):
        for p in ("0.001", "0.02", "0.05", "0.173", "0.5", "0.9"):
            tails = exact_tails(n, p)
            for k in range(0, n + 2):
                want = tails[k]
                got = binomial_upper_tail(k, n, float(p))
                assert got == pytest.approx(want, rel=1e-9, abs=1e-300), (k, n, p)


def test_tail_edges() -> None:
    assert binomial_upper_tail(0, 0, 0.3) == 1.0  # at least 0 of nothing: certain
    assert binomial_upper_tail(1, 0, 0.3) == 0.0
    assert binomial_upper_tail(-3, 10, 0.3) == 1.0
    assert binomial_upper_tail(11, 10, 0.3) == 0.0
    assert binomial_upper_tail(1, 10, 0.0) == 0.0
    assert binomial_upper_tail(0, 10, 0.0) == 1.0
    assert binomial_upper_tail(10, 10, 1.0) == 1.0


def test_tail_with_a_million_nodes_neither_overflows_nor_goes_nan() -> None:
    n, p = 1_000_000, 0.02  # mean 20,000, sd 140
    at_mean = binomial_upper_tail(20_000, n, p)
    assert 0.49 < at_mean < 0.51
    assert binomial_upper_tail(19_000, n, p) > 0.999999
    far = binomial_upper_tail(21_000, n, p)  # 7 sd above: about 1e-12
    assert 0 < far < 1e-10
    assert binomial_upper_tail(30_000, n, p) == 0.0  # below the smallest double: exactly 0
    for k in range(0, n + 1, 50_000):
        value = binomial_upper_tail(k, n, p)
        assert not math.isnan(value) and 0.0 <= value <= 1.0


def test_tail_falls_as_k_grows_and_rises_as_n_grows() -> None:
    for p in (0.01, 0.05, 0.3):
        tails = [binomial_upper_tail(k, 60, p) for k in range(62)]
        assert all(a >= b for a, b in itertools.pairwise(tails))
        by_n = [binomial_upper_tail(5, n, p) for n in range(0, 120)]
        assert all(a <= b for a, b in itertools.pairwise(by_n))


# -- what counts --------------------------------------------------------------------------


def test_every_report_kind_is_classified_exactly_once() -> None:
    kinds = set(ReportKind.__args__)  # type: ignore[attr-defined]
    assert COUNTED_KINDS.isdisjoint(IGNORED_KINDS)
    assert kinds <= COUNTED_KINDS | IGNORED_KINDS, kinds - (COUNTED_KINDS | IGNORED_KINDS)


@pytest.mark.parametrize("kind", sorted(COUNTED_KINDS))
def test_the_release_failing_counts(kind: str) -> None:
    assert counts_against_release(kind)


@pytest.mark.parametrize(
    "kind", ["out_of_space", "node_held", "download_failed", "heartbeat", "update_succeeded"]
)
def test_the_machines_own_trouble_does_not_count(kind: str) -> None:
    assert not counts_against_release(kind)


def test_an_unknown_kind_is_an_error_that_says_where_to_classify_it() -> None:
    with pytest.raises(ValueError, match=r"'disk_on_fire'.*COUNTED_KINDS or IGNORED_KINDS"):
        counts_against_release("disk_on_fire")


def test_tally_counts_distinct_failed_nodes_among_the_updated_ones() -> None:
    updated = ["a", "b", "c", "d", "a"]  # a repeated id is one node
    failures = [
        ("a", "crash_loop"),
        ("a", "crash_loop"),  # a crash loop sends many reports: one node
        ("a", "hang"),
        ("b", "out_of_space"),  # the machine's
        ("c", "rolled_back"),
        ("z", "update_failed"),  # not among the updated nodes (another version's report)
    ]
    assert tally(NEW, updated, failures) == VersionCounts(NEW, 4, 2)
    assert tally(NEW, [], []) == VersionCounts(NEW, 0, 0)


# -- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("updated", "failed", "match"),
    [
        (3, 4, "4 failed nodes but only 3 updated"),
        (-1, 0, "updated must be a whole number"),
        (5, -2, "failed must be a whole number"),
        (2.5, 1, "updated must be a whole number"),
        (True, 0, "updated must be a whole number"),
    ],
)
def test_impossible_counts_are_refused(updated: object, failed: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        VersionCounts(NEW, updated, failed)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("alpha", 0.0, "alpha must be between 0 and 1"),
        ("alpha", 1.0, "alpha must be between 0 and 1"),
        ("alpha", float("nan"), "alpha must be between 0 and 1"),
        ("margin", -0.01, "margin must be"),
        ("margin", 1.0, "margin must be"),
        ("prior_rate", 1.5, "prior_rate must be"),
        ("min_affected", 0, "min_affected must be a whole number, 1 or more"),
        ("prior_nodes", -1, "prior_nodes must be a whole number, 0 or more"),
        ("min_affected", 2.0, "min_affected must be a whole number"),
    ],
)
def test_bad_parameters_are_refused(field: str, value: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        HealthRule(**{field: value})  # type: ignore[arg-type]


# -- the verdict table ----------------------------------------------------------------------

FRESH = counts(0, 0, OLD)  # no data for the baseline: the prior 2 %
STEADY = counts(5000, 100, OLD)  # 2 % observed on 5,000 nodes
QUIET = counts(5000, 40, OLD)  # 0.8 %


@pytest.mark.parametrize(
    ("candidate", "baseline", "action"),
    [
        # Early nodes: one failure of three is not a pattern.
        (counts(3, 1), STEADY, "continue"),
        (counts(3, 3), STEADY, "continue"),  # 100 %, but fewer than 5 nodes
        (counts(4, 4), FRESH, "continue"),
        (counts(0, 0), STEADY, "continue"),
        (counts(0, 0), FRESH, "continue"),
        # Slightly worse than the fleet is not clearly worse.
        (counts(200, 6), STEADY, "continue"),  # 3 % vs 2 %
        (counts(200, 6), FRESH, "continue"),
        (counts(1000, 30), STEADY, "continue"),
        (counts(100_000, 2_900), STEADY, "continue"),  # 2.9 %, very sure, under the margin
        # As good as the fleet.
        (counts(5000, 100), STEADY, "continue"),
        (counts(40, 1), QUIET, "continue"),
        # A release that crashes 30 %: paused within the first 20 nodes.
        (counts(20, 6), STEADY, "pause"),
        (counts(20, 6), FRESH, "pause"),
        (counts(17, 5), STEADY, "pause"),
        # 7 of 40 (17.5 %) against 0.8 %.
        (counts(40, 7), QUIET, "pause"),
        # 5 of 40 (12.5 %): the excess is there but the evidence is not, yet.
        (counts(40, 5), STEADY, "continue"),
        (counts(80, 10), STEADY, "pause"),
        # Margin met on a large sample.
        (counts(10_000, 600), STEADY, "pause"),  # 6 % vs 2 %
        (counts(1_000_000, 60_000), STEADY, "pause"),
        # A fleet whose current version already fails often: a new one must beat that by 3 pts.
        (counts(100, 12), counts(2000, 200, OLD), "continue"),  # 12 % vs 10 %
        (counts(100, 25), counts(2000, 200, OLD), "pause"),  # 25 % vs 10 %
        # Every node failed.
        (counts(5, 5), STEADY, "pause"),
        (counts(1_000_000, 1_000_000), STEADY, "pause"),
    ],
)
def test_verdicts(candidate: VersionCounts, baseline: VersionCounts, action: str) -> None:
    verdict = judge(candidate, baseline, RULE)
    assert verdict.action == action, verdict.why
    assert verdict.why.endswith("paused" if action == "pause" else "continue")
    for number in (verdict.p_value, verdict.baseline_rate, verdict.candidate_rate):
        assert not math.isnan(number) and 0.0 <= number <= 1.0


def test_the_sentence_gives_the_numbers_and_the_reason() -> None:
    paused = judge(counts(40, 7), QUIET, RULE)
    assert paused.paused
    assert paused.why == (
        "1.5.0: 7 of 40 updated nodes failed (17.5 %) against 0.8 % for 1.4.2; one-sided "
        "test p = 0.00072 < 0.01 and at least 5 affected nodes: paused"
    )
    assert paused.why.startswith(
        "1.5.0: 7 of 40 updated nodes failed (17.5 %) against 0.8 % for 1.4.2"
    )
    assert "one-sided test p = " in paused.why
    assert "< 0.01 and at least 5 affected nodes: paused" in paused.why
    assert paused.p_value < 0.01
    assert paused.null_rate == pytest.approx(paused.baseline_rate + 0.03)

    early = judge(counts(3, 1), FRESH, RULE)
    assert early.why == (
        "1.5.0: 1 of 3 updated nodes failed (33.3 %) against the prior 2.0 % (no data for "
        "1.4.2); fewer than 5 affected nodes: continue"
    )
    slight = judge(counts(200, 6), STEADY, RULE)
    assert "only 1.0 points above the baseline, under the margin of 3.0: continue" in slight.why
    better = judge(counts(1000, 5), STEADY, RULE)
    assert better.why.endswith("(0.5 %) against 2.0 % for 1.4.2; not above the baseline: continue")
    unsure = judge(counts(40, 5), STEADY, RULE)
    assert "p = 0.048 ≥ 0.01, not clearly above 5.0 %: continue" in unsure.why


def test_the_baseline_leans_on_the_prior_only_while_it_has_few_nodes() -> None:
    assert judge(counts(10, 0), FRESH, RULE).baseline_rate == pytest.approx(0.02)
    # 1 failure of 10 baseline nodes is not a 10 % baseline: (1 + 0.02*50) / (10 + 50).
    assert judge(counts(10, 0), counts(10, 1, OLD), RULE).baseline_rate == pytest.approx(2 / 60)
    # 5,000 nodes at 0.8 %: barely moved by the prior.
    assert judge(counts(10, 0), QUIET, RULE).baseline_rate == pytest.approx(41 / 5050)
    # No prior weight and no baseline data: the prior rate still stands.
    bare = HealthRule(prior_nodes=0)
    assert judge(counts(10, 0), FRESH, bare).baseline_rate == pytest.approx(0.02)


def test_a_margin_that_reaches_one_never_pauses() -> None:
    rule = HealthRule(margin=0.99, prior_rate=0.5)
    verdict = judge(counts(100, 100), FRESH, rule)
    assert verdict.null_rate == 1.0
    assert verdict.action == "continue"


# -- properties ------------------------------------------------------------------------------

BASELINES = [FRESH, STEADY, QUIET, counts(30, 3, OLD), counts(2000, 200, OLD)]
RULES = [RULE, HealthRule(alpha=0.05, margin=0.0, min_affected=1), HealthRule(margin=0.1)]


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("baseline", BASELINES)
def test_more_failures_never_turn_a_pause_into_continue(
    rule: HealthRule, baseline: VersionCounts
) -> None:
    seen = set()
    for n in range(0, 81):
        paused = [judge(counts(n, k), baseline, rule).paused for k in range(n + 1)]
        seen.update(paused)
        first = paused.index(True) if True in paused else n + 1
        assert all(paused[first:]), (n, paused)
    assert seen == {True, False}  # the grid crosses the boundary: the check is not empty


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("baseline", BASELINES)
def test_more_successes_never_turn_continue_into_pause(
    rule: HealthRule, baseline: VersionCounts
) -> None:
    seen = set()
    for k in range(0, 31):
        paused = [judge(counts(n, k), baseline, rule).paused for n in range(k, 150)]
        seen.update(paused)
        # Once continue at (n, k), continue for every larger n with the same k.
        first_continue = paused.index(False) if False in paused else len(paused)
        assert not any(paused[first_continue:]), (k, paused)
    assert seen == {True, False}


def test_a_worse_baseline_never_turns_continue_into_pause() -> None:
    seen = set()
    for n, k in [(20, 6), (40, 5), (80, 10), (200, 12), (1000, 60)]:
        paused = [judge(counts(n, k), counts(1000, b, OLD), RULE).paused for b in range(0, 301)]
        seen.update(paused)
        first_continue = paused.index(False) if False in paused else len(paused)
        assert not any(paused[first_continue:]), (n, k)
    assert seen == {True, False}


# -- simulation ------------------------------------------------------------------------------


def nodes_until_paused(
    rng: random.Random, true_rate: float, baseline: VersionCounts, nodes: int
) -> int | None:
    """Roll out to ``nodes`` nodes one by one, judging continuously; where it paused.

    Judging after each failure is the same as judging after every node: between failures
    only successes arrive, and more successes never turn continue into pause (tested above).
    """
    failed = 0
    for updated in range(1, nodes + 1):
        if rng.random() < true_rate:
            failed += 1
            if judge(counts(updated, failed), baseline, RULE).paused:
                return updated
    return None


def simulate(true_rate: float, baseline: VersionCounts, runs: int, nodes: int) -> list[int | None]:
    rng = random.Random(14)  # seeded: the same rollouts every run
    return [nodes_until_paused(rng, true_rate, baseline, nodes) for _ in range(runs)]


@pytest.mark.parametrize("baseline", [STEADY, FRESH], ids=["steady-2pct", "fresh-fleet"])
def test_a_good_release_is_rarely_paused(baseline: VersionCounts) -> None:
    # 2,000 rollouts of 1,000 nodes each at the fleet's own 2 %, judged after every node:
    # decision 075 states at most 0.5 % false pauses (1 in 2,000 in this seeded run).
    outcomes = simulate(0.02, baseline, runs=2000, nodes=1000)
    false_pauses = sum(1 for n in outcomes if n is not None)
    assert false_pauses / len(outcomes) <= 0.005


def test_a_slightly_worse_release_is_rarely_paused() -> None:
    # 3 % against 2 %: worse, but within the margin; at most 0.5 % paused.
    outcomes = simulate(0.03, STEADY, runs=1000, nodes=1000)
    assert sum(1 for n in outcomes if n is not None) / len(outcomes) <= 0.005


def percentile(values: list[int], fraction: float) -> int:
    ordered = sorted(values)
    return ordered[math.ceil(fraction * len(ordered)) - 1]


def test_a_release_that_crashes_30_percent_is_paused_within_50_nodes() -> None:
    outcomes = simulate(0.30, STEADY, runs=1000, nodes=1000)
    assert all(n is not None for n in outcomes)
    paused_at = [n for n in outcomes if n is not None]
    assert percentile(paused_at, 0.5) <= 20
    assert percentile(paused_at, 0.99) <= 50
    assert max(paused_at) <= 100


def test_a_release_that_fails_20_percent_is_paused_within_100_nodes() -> None:
    outcomes = simulate(0.20, STEADY, runs=1000, nodes=1000)
    assert all(n is not None for n in outcomes)
    paused_at = [n for n in outcomes if n is not None]
    assert percentile(paused_at, 0.5) <= 30
    assert percentile(paused_at, 0.99) <= 100
    assert max(paused_at) <= 200
