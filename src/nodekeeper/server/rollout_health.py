"""Is the rolling-out version clearly worse than the fleet's? The pure judgement (075).

No I/O: the wiring (decision 078: ``rollout_counts`` counts nodes from the stored reports,
``health_check`` runs this in every replica's loop and pauses once across replicas) hands
the numbers in; this module says continue or pause, with the numbers and a sentence
saying why.

The rule, in one line: pause when at least ``min_affected`` updated nodes failed, the
observed failure rate is at least ``margin`` above the baseline's, AND an exact one-sided
binomial test rejects "the new version's failure rate is at most baseline + margin" at
level ``alpha``. The baseline rate is the fleet's current version's, shrunk towards a
configured prior rate so that a fresh fleet (or a baseline seen on few nodes) still has one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

# Kinds that speak against the release: the new version did not install, did not come up
# healthy, or came up and then crashed or hung. Counted once per node, however many
# reports the node sent (a crash loop sends many).
COUNTED_KINDS = frozenset(
    {"update_failed", "rolled_back", "held_after_migration", "crash_loop", "hang"}
)
# Kinds that are the machine's, the network's or the operator's, not the release's: a full
# disk, a dead mirror, an artifact spoilt on the way (checked before anything changes on the
# node, and the release itself is checked at publish), the operator's resource limit, a
# stop the old version ignored. ``node_held`` (storage gone) never reaches the control
# plane as a report at all (decision 070). Successes and heartbeats are not failures.
IGNORED_KINDS = frozenset(
    {
        "heartbeat",
        "update_succeeded",
        "out_of_space",
        "download_failed",
        "verification_failed",
        "limit_hit",
        "stop_timeout",
        "node_held",
        # The node's router or firewall: the dial-back found it unreachable from outside
        # (decision 082). A release does not open or close ports; it says nothing of it.
        "unreachable",
    }
)

Action = Literal["continue", "pause"]


def counts_against_release(kind: str) -> bool:
    """Whether a report of ``kind`` counts as the release failing on that node."""
    if kind in COUNTED_KINDS:
        return True
    if kind in IGNORED_KINDS:
        return False
    raise ValueError(
        f"unknown report kind {kind!r}: add it to COUNTED_KINDS or IGNORED_KINDS in "
        "nodekeeper.server.rollout_health (and say why in decision 075)"
    )


@dataclass(frozen=True)
class VersionCounts:
    """One version over the judged window: nodes that ran it, and how many of them failed.

    ``updated``: distinct nodes that updated to the version in the window (for the
    baseline: distinct nodes that ran it in the window). ``failed``: how many of those
    nodes sent at least one report of a counted kind about it.
    """

    version: str
    updated: int
    failed: int

    def __post_init__(self) -> None:
        for name in ("updated", "failed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(
                    f"{self.version}: {name} must be a whole number of nodes, 0 or more; "
                    f"got {value!r}"
                )
        if self.failed > self.updated:
            raise ValueError(
                f"{self.version}: {self.failed} failed nodes but only {self.updated} updated; "
                "count failed nodes among the updated ones (distinct nodes, not reports)"
            )

    @property
    def rate(self) -> float:
        return self.failed / self.updated if self.updated else 0.0


def tally(
    version: str, updated_nodes: Iterable[str], failures: Iterable[tuple[str, str]]
) -> VersionCounts:
    """Counts for ``version`` from the node ids that updated and (node_id, kind) reports.

    Only nodes among ``updated_nodes`` are counted, each at most once; a report of a kind
    that does not count is skipped; an unknown kind is an error (see
    :func:`counts_against_release`).
    """
    nodes = set(updated_nodes)
    failed = {node for node, kind in failures if counts_against_release(kind) and node in nodes}
    return VersionCounts(version, len(nodes), len(failed))


@dataclass(frozen=True)
class HealthRule:
    """The rule's parameters; the defaults are argued in decision 075."""

    alpha: float = 0.01  # the one-sided test's level, per look
    margin: float = 0.03  # how much worse (absolute rate) counts as "clearly worse"
    min_affected: int = 5  # never pause on fewer failed nodes than this
    prior_rate: float = 0.02  # the baseline's rate when the fleet has no data for it
    prior_nodes: int = 50  # how many nodes' worth of weight the prior rate carries

    def __post_init__(self) -> None:
        problems = []
        if not 0.0 < self.alpha < 1.0:
            problems.append(f"alpha must be between 0 and 1 (e.g. 0.01); got {self.alpha!r}")
        if not 0.0 <= self.margin < 1.0:
            problems.append(f"margin must be from 0 up to below 1 (e.g. 0.03); got {self.margin!r}")
        if not 0.0 <= self.prior_rate < 1.0:
            problems.append(
                f"prior_rate must be from 0 up to below 1 (e.g. 0.02); got {self.prior_rate!r}"
            )
        for name, low in (("min_affected", 1), ("prior_nodes", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                problems.append(f"{name} must be a whole number, {low} or more; got {value!r}")
        if problems:
            raise ValueError("; ".join(problems))


@dataclass(frozen=True)
class Verdict:
    action: Action
    candidate: VersionCounts
    baseline: VersionCounts
    candidate_rate: float  # observed failed / updated for the new version
    baseline_rate: float  # the baseline rate used: observed, shrunk towards the prior
    null_rate: float  # baseline_rate + margin, capped at 1: the rate tested against
    p_value: float  # P(at least this many failures | null_rate), exact binomial
    why: str

    @property
    def paused(self) -> bool:
        return self.action == "pause"


def binomial_upper_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), exact up to floating point, for any n.

    Sums the pmf outwards from ``k`` using the ratio between neighbouring terms, starting
    from the log-pmf (``lgamma``), so nothing overflows for a million nodes; it stops once
    the terms no longer change the sum. Below the mean it sums the other tail and takes
    the complement, which is then at least about one half and so loses nothing.
    """
    if k <= 0 or p >= 1.0:
        return 1.0
    if k > n or p <= 0.0:
        return 0.0
    log_p, log_q = math.log(p), math.log1p(-p)

    def log_pmf(i: int) -> float:
        return (
            math.lgamma(n + 1)
            - math.lgamma(i + 1)
            - math.lgamma(n - i + 1)
            + i * log_p
            + (n - i) * log_q
        )

    odds = p / (1.0 - p)
    if k > n * p:
        # Terms fall from k upwards: sum until they stop mattering.
        term = math.exp(log_pmf(k))
        total, i = term, k
        while i < n:
            term *= (n - i) / (i + 1) * odds
            i += 1
            total += term
            if term <= total * 1e-17:
                break
        return min(1.0, total)
    # Below the mean: 1 - P(X <= k-1), summing downwards from k-1 where terms fall too.
    term = math.exp(log_pmf(k - 1))
    lower, i = term, k - 1
    while i > 0:
        term *= i / (n - i + 1) / odds
        i -= 1
        lower += term
        if term <= lower * 1e-17:
            break
    return min(1.0, max(0.0, 1.0 - lower))


def _pct(rate: float) -> str:
    return f"{rate * 100:.1f} %"


def judge(candidate: VersionCounts, baseline: VersionCounts, rule: HealthRule) -> Verdict:
    """Continue or pause the rollout of ``candidate.version``, compared with ``baseline``."""
    # Beta-prior shrinkage: ``prior_nodes`` imaginary nodes failing at ``prior_rate``. A
    # fresh fleet gets the prior; a baseline seen on thousands of nodes gets its own rate.
    weight = rule.prior_nodes
    if baseline.updated + weight == 0:
        baseline_rate = rule.prior_rate
    else:
        baseline_rate = (baseline.failed + rule.prior_rate * weight) / (baseline.updated + weight)
    null_rate = min(1.0, baseline_rate + rule.margin)
    k, n = candidate.failed, candidate.updated
    rate = candidate.rate
    p_value = binomial_upper_tail(k, n, null_rate)

    head = f"{candidate.version}: {k} of {n} updated nodes failed ({_pct(rate)})"
    if baseline.updated:
        against = f"against {_pct(baseline_rate)} for {baseline.version}"
    else:
        against = f"against the prior {_pct(baseline_rate)} (no data for {baseline.version})"
    test = f"one-sided test p = {p_value:.2g}"

    # A small epsilon so that 0.05 - 0.02 >= 0.03 holds despite binary fractions.
    excess_ok = rate - baseline_rate >= rule.margin - 1e-12
    if k < rule.min_affected:
        because = f"fewer than {rule.min_affected} affected nodes"
    elif rate <= baseline_rate:
        because = "not above the baseline"
    elif not excess_ok:
        because = (
            f"only {(rate - baseline_rate) * 100:.1f} points above the baseline, "
            f"under the margin of {rule.margin * 100:.1f}"
        )
    elif not p_value < rule.alpha:
        because = f"{test} ≥ {rule.alpha:g}, not clearly above {_pct(null_rate)}"
    else:
        why = (
            f"{head} {against}; {test} < {rule.alpha:g} and at least "
            f"{rule.min_affected} affected nodes: paused"
        )
        return Verdict("pause", candidate, baseline, rate, baseline_rate, null_rate, p_value, why)
    why = f"{head} {against}; {because}: continue"
    return Verdict("continue", candidate, baseline, rate, baseline_rate, null_rate, p_value, why)
