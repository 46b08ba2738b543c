"""The control plane's ``GET /metrics`` in Prometheus text (issue 14).

Counters of what this replica served are kept in process (``RequestCounts``): the ASGI
requests by method, route template and status (a middleware), and the fast lane's
``GET /`` answers (200 or 304), which never reach ASGI. Everything else is read at scrape
time from what the replica already holds, so it cannot drift from the API: document
renders and the store generation (``DocumentCache``), each process's rollout percentage
and phase (the current snapshot, at the document's instant), and from the database the
nodes by the version they last reported and the reports by kind over the last day
(``store.version_summary``, the same query as ``rollout status``). Each replica counts its
own requests; the database figures are the fleet's, the same on every replica.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from . import ramp
from .doc_cache import DocumentCache
from .tuf_expiry import Expiry

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# The window of "nodes by version" and "reports by kind": a node that has not reported
# for a day is not counted as running anything.
WINDOW_SECONDS = 86400.0


class RequestCounts:
    """Thread-safe counters the middleware and the fast lane add to."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._asgi: Counter[tuple[str, str, str]] = Counter()
        self._fast: Counter[str] = Counter()

    def asgi(self, method: str, route: str, status: int) -> None:
        with self._lock:
            self._asgi[(method, route, str(status))] += 1

    def fast_lane(self, status: int) -> None:
        with self._lock:
            self._fast[str(status)] += 1

    def read(self) -> tuple[dict[tuple[str, str, str], int], dict[str, int]]:
        with self._lock:
            return dict(self._asgi), dict(self._fast)


class ControlPlaneCollector:
    def __init__(
        self,
        counts: RequestCounts,
        documents: DocumentCache,
        summary: Callable[[float], dict[str, dict[str, dict[str, Any]]]],
        clock: Callable[[], float] = time.time,
        auto_pauses: Callable[[], dict[str, int]] | None = None,
        tuf_expiries: Callable[[], list[Expiry]] | None = None,
    ) -> None:
        self._counts = counts
        self._documents = documents
        self._summary = summary
        self._clock = clock
        self._auto_pauses = auto_pauses
        self._tuf_expiries = tuf_expiries

    def collect(self) -> Iterator[Metric]:
        yield from self._tuf()
        asgi, fast = self._counts.read()
        requests = CounterMetricFamily(
            "nodekeeper_cp_requests",
            "requests answered by this replica (route template; the fast lane is route /)",
            labels=["method", "route", "status"],
        )
        for (method, route, status), count in sorted(asgi.items()):
            requests.add_metric([method, route, status], count)
        for status, count in sorted(fast.items()):
            requests.add_metric(["GET", "/ (fast lane)", status], count)
        yield requests
        documents = self._documents
        yield CounterMetricFamily(
            "nodekeeper_cp_document_renders",
            "times this replica serialized the announcement",
            value=documents.renders,
        )
        doc = documents.current
        if doc is None:
            return
        yield GaugeMetricFamily(
            "nodekeeper_cp_store_generation", "the store generation served", value=doc.generation
        )
        percent = GaugeMetricFamily(
            "nodekeeper_cp_rollout_percent",
            "the rollout's percentage now (0 without a rollout)",
            labels=["process", "target"],
        )
        paused = GaugeMetricFamily(
            "nodekeeper_cp_rollout_paused", "1 while the rollout is paused", labels=["process"]
        )
        for name, process in sorted(doc.snapshot.processes.items()):
            rollout = process.rollout
            if rollout is None:
                percent.add_metric([name, ""], 0.0)
                paused.add_metric([name], 0.0)
                continue
            percent.add_metric(
                [name, rollout.version], ramp.percent_at(rollout.ramp, doc.evaluated_at)
            )
            is_paused = ramp.phase(rollout.ramp, doc.evaluated_at) == "paused" and not (
                rollout.aborted
            )
            paused.add_metric([name], 1.0 if is_paused else 0.0)
        yield percent
        yield paused
        nodes = GaugeMetricFamily(
            "nodekeeper_cp_nodes",
            "nodes whose last report (within a day) names this version",
            labels=["process", "version"],
        )
        failures = GaugeMetricFamily(
            "nodekeeper_cp_failure_reports",
            "failure reports aimed at this version within the last day, by kind",
            labels=["process", "version", "kind"],
        )
        for process_name, versions in sorted(self._summary(self._clock() - WINDOW_SECONDS).items()):
            for version, entry in sorted(versions.items()):
                nodes.add_metric([process_name, version], entry["nodes"])
                for kind, count in sorted(entry["failures_by_kind"].items()):
                    failures.add_metric([process_name, version, kind], count)
        yield nodes
        yield failures
        if self._auto_pauses is not None:
            # From the audit rows (decision 078): the fleet's count, the same on every
            # replica, so that a pause fired once is counted once, whoever fired it.
            pauses = CounterMetricFamily(
                "nodekeeper_rollout_auto_pauses",
                "rollouts the health check paused, per process (from the audit log)",
                labels=["process"],
            )
            counted = self._auto_pauses()
            for name in sorted(set(counted) | set(doc.snapshot.processes)):
                pauses.add_metric([name], counted.get(name, 0))
            yield pauses

    def _tuf(self) -> Iterator[Metric]:
        """Signed releases (decision 084): each TUF role's newest version and the seconds
        until it expires, from the database (the same on every replica). Alert on
        ``nodekeeper_cp_tuf_expiry_seconds < 30 d`` for root and targets (signed offline,
        by people) and ``< half the period`` for snapshot (3.5 d) and timestamp (12 h),
        which the server re-signs before half their period. No series without a root."""
        if self._tuf_expiries is None:
            return
        expiries = self._tuf_expiries()
        if not expiries:
            return
        now = self._clock()
        left = GaugeMetricFamily(
            "nodekeeper_cp_tuf_expiry_seconds",
            "seconds until the newest TUF metadata of each role expires (negative: expired)",
            labels=["role"],
        )
        version = GaugeMetricFamily(
            "nodekeeper_cp_tuf_version",
            "the newest TUF metadata version of each role",
            labels=["role"],
        )
        for e in expiries:
            left.add_metric([e.role], round(e.left(now), 3))
            version.add_metric([e.role], e.version)
        yield left
        yield version


def render(collector: ControlPlaneCollector) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)  # type: ignore[arg-type]
    return generate_latest(registry)


def route_of(scope: dict[str, Any]) -> str:
    """The matched route's template (``/v1/admin/processes/{process}/rollout``), never the
    raw path: a label per URL would grow without bound."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    return "/artifacts" if str(scope.get("path", "")).startswith("/artifacts/") else "(unmatched)"
