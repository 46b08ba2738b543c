"""The control plane's /metrics (issue 14) on a real server process: requests by route
template (the fast lane's GET / included), renders, the rollout's percentage, nodes by the
version they last reported and failure reports by kind, read back with Prometheus's own
parser."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from .test_api import publish
from .test_reports import Node


def scrape(server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = httpx.get(server.url + "/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    found = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_metrics_of_a_fleet_in_a_rollout(server, tmp_path) -> None:
    publish(server, tmp_path, "1.0.0")
    publish(server, tmp_path, "1.1.0")
    server.cli("rollout", "start", "storagenode", "1.1.0")
    server.cli("rollout", "set", "storagenode", "25")
    with httpx.Client(base_url=server.url) as client:
        etag = client.get("/").headers["etag"]
        for _ in range(4):
            client.get("/")
        for _ in range(3):
            assert client.get("/", headers={"If-None-Match": etag}).status_code == 304
        assert client.get("/seed").status_code == 200
        assert client.get("/processes/nope/minimum/url").status_code == 422
    nodes = [Node() for _ in range(3)]
    for node in nodes[:2]:
        assert node.send(server, node.report()).status_code == 202
    updated = nodes[2].report("update_succeeded", version="1.1.0")
    assert nodes[2].send(server, updated).status_code == 202
    failed = nodes[0].report("rolled_back", target_version="1.1.0", message="pulse failed")
    assert nodes[0].send(server, failed).status_code == 202

    seen = scrape(server)

    def requests(method: str, route: str, status: int) -> float:
        labels = (("method", method), ("route", route), ("status", str(status)))
        return seen[("nodekeeper_cp_requests_total", labels)]

    assert requests("GET", "/ (fast lane)", 200) >= 5
    assert requests("GET", "/ (fast lane)", 304) == 3
    assert requests("GET", "/seed", 200) == 1
    # A route template, never the raw path: the label set stays bounded.
    assert requests("GET", "/processes/{process}/{which}/url", 422) == 1
    assert requests("POST", "/v1/reports", 202) == 4
    assert seen[("nodekeeper_cp_document_renders_total", ())] >= 1
    rollout = (("process", "storagenode"), ("target", "1.1.0"))
    assert seen[("nodekeeper_cp_rollout_percent", rollout)] == 25
    paused = ("nodekeeper_cp_rollout_paused", (("process", "storagenode"),))
    assert seen[paused] == 0
    # The rollout's nodes: the failure counts against the version it was aimed at.
    nodes_of = {v: seen[("nodekeeper_cp_nodes", (("process", "storagenode"), ("version", v)))]
                for v in ("1.0.0", "1.1.0")}  # fmt: skip
    assert nodes_of == {"1.0.0": 2, "1.1.0": 1}
    kind = (("kind", "rolled_back"), ("process", "storagenode"), ("version", "1.1.0"))
    assert seen[("nodekeeper_cp_failure_reports", kind)] == 1
    server.cli("rollout", "pause", "storagenode")
    after = scrape(server)
    assert after[paused] == 1 and after[("nodekeeper_cp_rollout_percent", rollout)] == 25
