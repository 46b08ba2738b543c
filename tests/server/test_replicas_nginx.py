"""Three real `server run` replicas over one PostgreSQL behind real nginx (the harness of
bench/fleet.py): they serve the same announcement with the same ETag whichever one nginx
picks, and a change made through one replica is served by all of them within the change
poll interval (decision 081)."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.server.fleet import PROCESS, publish_and_start
from tests.server.replicas import ReplicaSet, parse_access_log

POLL = 0.5  # each replica's --poll-interval: how often it looks for others' changes
# Beyond the poll interval: one render and the scheduling of three servers, PostgreSQL and
# nginx on two busy cores, beside five other test workers and Wine. What was measured is in
# the failure message; the poll interval's own figure is the bench's (bench/fleet.py).
SLACK = 5.0


def agreed(rs: ReplicaSet) -> tuple[str, str] | None:
    """(ETag, body sha256) when every replica serves the same document, else None."""
    seen = {(etag, digest) for etag, digest, _ in rs.documents()}
    return seen.pop() if len(seen) == 1 else None


@pytest.mark.e2e
def test_replicas_behind_nginx_agree_and_serve_a_change_within_the_poll_interval(tmp_path, pg_url):
    rs = ReplicaSet(tmp_path, pg_url, 3, ramp_tick=3600, poll_interval=POLL)
    with rs:
        publish_and_start(rs.url, rs.token, tmp_path, percent=5)  # through nginx
        deadline = time.monotonic() + 10 * POLL + SLACK
        while (first := agreed(rs)) is None:
            assert time.monotonic() < deadline, rs.documents()
            time.sleep(0.05)
        etag, _ = first
        # Through nginx, round robin: every replica's answer is the same, and each one
        # answers the ETag another one made with 304.
        with httpx.Client(base_url=rs.url) as client:
            for _ in range(2 * len(rs.replicas)):
                assert client.get("/").headers["etag"] == etag
                assert client.get("/", headers={"If-None-Match": etag}).status_code == 304

        # A change through one replica (directly, not through nginx).
        with httpx.Client(
            base_url=rs.replicas[1].url, headers={"Authorization": f"Bearer {rs.token}"}
        ) as admin:
            admin.put(
                f"/v1/admin/processes/{PROCESS}/rollout/percent", json={"percent": 12}
            ).raise_for_status()
        changed_at = time.monotonic()
        while True:
            now = agreed(rs)
            elapsed = time.monotonic() - changed_at
            if now is not None and now[0] != etag:
                break
            assert elapsed < POLL + SLACK, f"replicas still differ after {elapsed:.2f} s"
            time.sleep(0.02)
        new_etag = now[0]
        with httpx.Client(base_url=rs.url) as client:
            for _ in range(len(rs.replicas)):
                r = client.get("/")
                assert r.headers["etag"] == new_etag
                assert '"rollout"' in r.text
    served_by = {e.upstream for e in parse_access_log(rs.nginx.access_log) if e.path == "/"}
    assert served_by == {f"127.0.0.1:{r.port}" for r in rs.replicas}
