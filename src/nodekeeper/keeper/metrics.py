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
        update = s.get("update")
        if update:
            yield from update_metrics(update)
        if s.get("signed_releases") is not None:
            yield GaugeMetricFamily(
                "nodekeeper_update_signed_releases",
                "1 if every artifact is checked against the TUF metadata (a trusted root is "
                "set), 0 if only against the announcement's sha256",
                value=1.0 if s["signed_releases"] else 0.0,
            )
        reach = s.get("reachability")
        if reach:
            yield from reachability_metrics(reach)


# Every outcome an update can end in (updater/outcomes.py): one series each, always
# present, so a dashboard's "last result" panel needs no absent() tricks.
OUTCOMES = ("committed", "rolled-back", "held", "failed")


def update_metrics(update: dict[str, Any]) -> Iterator[Metric]:
    """The updater's side (issue 14): the last check, the last result, the installed
    version and the failures, from the status's ``update`` part."""
    check = update.get("last_check") or {}
    if check.get("at") is not None:
        yield GaugeMetricFamily(
            "nodekeeper_update_last_check_timestamp_seconds",
            "when the control plane was last asked (UNIX time)",
            value=float(check["at"]),
        )
        yield GaugeMetricFamily(
            "nodekeeper_update_last_check_success",
            "1 if the last check reached the control plane",
            value=1.0 if check.get("ok") else 0.0,
        )
    yield CounterMetricFamily(
        "nodekeeper_update_checks", "checks since the keeper started", value=update["checks"]
    )
    yield GaugeMetricFamily(
        "nodekeeper_update_failed_checks_in_row",
        "checks in a row that did not reach the control plane",
        value=update["failed_checks_in_row"],
    )
    version = GaugeMetricFamily(
        "nodekeeper_update_installed_info",
        "1 for the installed node version (and the one before it)",
        labels=["version", "previous"],
    )
    version.add_metric([update.get("current") or "", update.get("previous") or ""], 1.0)
    yield version
    outcome = update.get("last_outcome") or {}
    result = GaugeMetricFamily(
        "nodekeeper_update_last_result",
        "1 for the outcome of the last update carried out",
        labels=["outcome"],
    )
    for name in OUTCOMES:
        result.add_metric([name], 1.0 if outcome.get("outcome") == name else 0.0)
    yield result
    if outcome.get("at") is not None:
        yield GaugeMetricFamily(
            "nodekeeper_update_last_result_timestamp_seconds",
            "when the last update ended (UNIX time)",
            value=float(outcome["at"]),
        )
    yield GaugeMetricFamily(
        "nodekeeper_update_failed_versions",
        "versions that failed and are not tried again until a newer one is announced",
        value=len(update.get("failed") or ()),
    )
    yield GaugeMetricFamily(
        "nodekeeper_update_held",
        "1 while the node is held on a version after a failed update with a migration",
        value=1.0 if update.get("held") else 0.0,
    )
    yield GaugeMetricFamily(
        "nodekeeper_update_in_progress",
        "1 while an update is between its download and its commit",
        value=1.0 if update.get("step") else 0.0,
    )


REACH_TCP = ("reachable", "unreachable")
REACH_UDP = ("reachable", "no_answer", "unreachable")


def reachability_metrics(reach: dict[str, Any]) -> Iterator[Metric]:
    """The control plane's dial-back (decision 082): one series per status and protocol,
    1 for the last result's, so "unreachable from outside" is one alert expression."""
    last = reach.get("last") or {}
    for protocol, statuses in (("tcp", REACH_TCP), ("udp", REACH_UDP)):
        family = GaugeMetricFamily(
            f"nodekeeper_reachability_{protocol}",
            f"1 for the {protocol.upper()} status the last dial-back found",
            labels=["status"],
        )
        for status in statuses:
            family.add_metric([status], 1.0 if last.get(protocol) == status else 0.0)
        yield family
    if last.get("checked_at") is not None:
        yield GaugeMetricFamily(
            "nodekeeper_reachability_last_check_timestamp_seconds",
            "when the control plane last dialled the node back (UNIX time)",
            value=float(last["checked_at"]),
        )
    yield GaugeMetricFamily(
        "nodekeeper_reachability_last_try_failed",
        "1 if the last request for a dial-back got no result (refused, no answer)",
        value=1.0 if reach.get("last_error") else 0.0,
    )


def render(snapshot: Callable[[], dict[str, Any]]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatusCollector(snapshot))  # type: ignore[arg-type]
    return generate_latest(registry)
