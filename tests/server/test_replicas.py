"""Persistence and several replicas: the ramp survives restarts; replicas agree."""

import json
import time

import httpx

from nodekeeper.version.schema import parse_announcement

from .controlplane import ControlPlane
from .test_api import publish


def percent_of(server) -> float:
    return json.loads(server.cli("rollout", "status", "--json").stdout)[0]["percent"]


def test_restart_continues_the_ramp(tmp_path):
    cp = ControlPlane(tmp_path / "cp")
    with cp:
        publish(cp, tmp_path, "1.0.0")
        publish(cp, tmp_path, "1.1.0")
        # 10000 %/day = 0.1157 %/s: fast enough to see move, slow enough not to finish
        cp.cli("rollout", "start", "storagenode", "1.1.0", "--rate", "10000")
        seed = parse_announcement(httpx.get(cp.url + "/").content).processes["storagenode"]
        seed = seed.rollout.seed
        time.sleep(0.5)
        before = percent_of(cp)
    stopped_at = time.time()
    time.sleep(1.0)
    with cp:  # same data dir and database
        after = percent_of(cp)
        restarted_at = time.time()
        doc = parse_announcement(httpx.get(cp.url + "/").content).processes["storagenode"]
    rate_per_second = 10_000 / 86_400
    # the ramp kept moving while the server was down, from where it was (Storj restarts it)
    assert after >= before + (restarted_at - stopped_at - 0.5) * rate_per_second
    assert after > 0.1
    assert doc.rollout.seed == seed


def test_replicas_over_one_postgres_serve_the_same_document(tmp_path, pg_url):
    a = ControlPlane(tmp_path / "a", pg_url, poll_interval=0.1, ramp_tick=3600)
    b = ControlPlane(tmp_path / "b", pg_url, poll_interval=0.1, ramp_tick=3600)
    # one shared artifact store, as replicas behind one name would have
    b.extra_args = ["--public-url", a.url]
    a.start()
    try:
        b.data_dir.mkdir(parents=True)
        (b.data_dir / "artifacts").symlink_to(a.data_dir / "artifacts")
        b.start()
        publish(a, tmp_path, "1.0.0")
        publish(a, tmp_path, "1.1.0")
        a.cli("rollout", "start", "storagenode", "1.1.0", "--rate", "50")
        b.cli("rollout", "set", "storagenode", "12")  # a change made through the other one
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            ra, rb = httpx.get(a.url + "/"), httpx.get(b.url + "/")
            if ra.content == rb.content:
                break
            time.sleep(0.05)
        assert ra.content == rb.content
        assert ra.headers["etag"] == rb.headers["etag"]
        doc = parse_announcement(ra.content).processes["storagenode"]
        assert doc.suggested.version == "1.1.0"
        assert doc.rollout.cursor.startswith("1eb851eb")  # 12 %, Storj's vector
        # both replicas wrote to the one audit table
        actions = [x["action"] for x in b.admin().get("/v1/admin/audit").json()]
        assert actions[:2] == ["rollout.set", "rollout.start"]
    finally:
        a.stop()
        b.stop()
