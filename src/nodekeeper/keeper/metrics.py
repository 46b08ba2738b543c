"""Prometheus metrics for the keeper's ``/metrics``, read from the status at scrape time.

A custom collector instead of Gauge objects updated in place: the status is the single
source of truth, so the metrics can never disagree with ``/status``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from nodekeeper.keeper.states import State

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class StatusCollector:
    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        s = self._snapshot()
        state = GaugeMetricFamily(
            "nodekeeper_node_state", "1 for the supervisor's current state", labels=["state"]
        )
        for name in State:
            state.add_metric([name.value], 1.0 if s["state"] == name.value else 0.0)
        yield state
        yield GaugeMetricFamily(
            "nodekeeper_node_up",
            "1 while the node is running and healthy",
            value=1.0 if s["state"] == State.RUNNING.value else 0.0,
        )
        yield CounterMetricFamily(
            "nodekeeper_node_restarts", "restarts since the keeper started", value=s["restarts"]
        )
        yield CounterMetricFamily(
            "nodekeeper_node_soft_limit_restarts",
            "graceful restarts for exceeding the soft memory limit",
            value=s["memory"]["soft_limit_restarts"],
        )
        yield GaugeMetricFamily(
            "nodekeeper_node_crash_loop",
            "1 while a crash loop is flagged",
            value=1.0 if s["crash_loop"] else 0.0,
        )
        yield GaugeMetricFamily(
            "nodekeeper_probe_consecutive_failures",
            "failed probes in a row",
            value=s["probe"]["consecutive_failures"],
        )
        mem, cpu = s["memory"], s["cpu"]
        optional = {
            "nodekeeper_node_uptime_seconds": ("seconds since the start", s["uptime_seconds"]),
            "nodekeeper_node_memory_bytes": ("memory of the node's tree", mem["bytes"]),
            "nodekeeper_node_cpu_percent": ("CPU of the tree, % of one core", cpu["percent"]),
            "nodekeeper_node_memory_soft_limit_bytes": ("soft memory limit", mem["soft_limit"]),
            "nodekeeper_node_memory_hard_limit_bytes": ("hard memory limit", mem["hard_limit"]),
        }
        pulse = s["last_pulse"]
        if pulse is not None:
            optional["nodekeeper_probe_seconds"] = ("duration of the last probe", pulse["seconds"])
        for name, (doc, value) in optional.items():
            if value is not None:
                yield GaugeMetricFamily(name, doc, value=float(value))


def render(snapshot: Callable[[], dict[str, Any]]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatusCollector(snapshot))  # type: ignore[arg-type]
    return generate_latest(registry)
