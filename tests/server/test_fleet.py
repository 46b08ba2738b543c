"""bench/fleet.py at a small scale, so the bench does not rot: 300 simulated keepers
(the keeper's own schedule, decision and signed reports) restart at once and check two
replicas behind nginx on a real PostgreSQL for two check intervals, time compressed 300x
(an interval of 3 s). What the bench measures must come out sane: every keeper checked,
the rate ratio and latencies are computed, what the keepers sent is what the server
stored, the rollout reached exactly its candidates. No figure is held to a target here:
this is not a timed test (the bench is where figures are read, on a quiet machine)."""

from __future__ import annotations

import math

import httpx
import pytest

from nodekeeper.version.rollout import is_rollout_candidate
from nodekeeper.version.schema import parse_announcement
from tests.server.fleet import (
    PROCESS,
    FleetConfig,
    cpu_seconds,
    peak_to_mean,
    percentile,
    publish_and_start,
    run_fleet,
    stored_counts,
)
from tests.server.replicas import ReplicaSet, parse_access_log

NODES = 300


@pytest.mark.e2e
def test_a_small_fleet_checks_reports_and_follows_the_rollout(tmp_path, pg_url):
    rs = ReplicaSet(tmp_path, pg_url, 2, ramp_tick=3600, poll_interval=0.2)
    with rs:
        publish_and_start(rs.url, rs.token, tmp_path, percent=50)
        config = FleetConfig(url=rs.url, nodes=NODES, compress=300, intervals=2, drain_seconds=15)
        before = cpu_seconds(rs.server_pids())
        result = run_fleet(config)
        spent = cpu_seconds(rs.server_pids()) - before
        final = parse_announcement(httpx.get(rs.url + "/").content).processes[PROCESS]
    logged = parse_access_log(rs.nginx.access_log)  # complete once nginx stopped

    # Every keeper checked, every check was answered, and many checked again: up to about
    # twice each in 2 intervals. How many second checks fit in the window depends on how
    # fast a loaded machine answers (time is compressed 300x: one real second is five
    # minutes of schedule; CI once had 443 of 600), so only the bounds are held here.
    assert result.polled == NODES
    assert set(result.polls.status) <= {200, 304}
    assert NODES * 1.1 <= len(result.polls) <= NODES * 2.2
    assert 304 in result.polls.status  # later checks send the ETag back
    # The mass restart's spread, as the bench computes it: 1 s real-equivalent minutes.
    buckets = result.poll_buckets()
    assert len(buckets) == 30 and sum(buckets) <= len(result.polls)
    ratio = peak_to_mean(buckets)
    assert math.isfinite(ratio) and ratio >= 1.0
    assert percentile(result.polls.seconds, 99) > 0

    # The rollout was followed: exactly the candidates at 50 % moved, and said so.
    seed, cursor = bytes.fromhex(final.rollout.seed), bytes.fromhex(final.rollout.cursor)
    for keeper in result.keepers:
        expected = (
            "1.1.0" if is_rollout_candidate(keeper.identity.node_id, seed, cursor) else "1.0.0"
        )
        assert keeper.version == expected
    updated = result.versions()["1.1.0"]
    assert 0.3 * NODES < updated < 0.7 * NODES

    # Reports: a heartbeat per keeper and per version change, an update_succeeded per
    # update, every one delivered, and what the server stored is what was sent.
    assert result.undelivered == 0 and result.rejected == 0
    assert result.report_kinds["update_succeeded"] == updated
    assert NODES <= result.report_kinds["heartbeat"] <= NODES + updated
    stored = stored_counts(pg_url)
    assert stored["kinds"] == dict(result.report_kinds)
    assert stored["versions"] == dict(result.versions())

    # The bench's other readings: nginx's log covers both replicas, and the servers spent
    # CPU that /proc shows.
    replicas = {entry.upstream for entry in logged if entry.upstream_seconds is not None}
    assert replicas == {f"127.0.0.1:{r.port}" for r in rs.replicas}
    assert sum(1 for e in logged if e.path == "/v1/reports") == len(result.reports)
    assert spent > 0
