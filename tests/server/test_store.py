"""The store against both back ends: an SQLite file and a real PostgreSQL."""

import json

import pytest
import sqlalchemy as sa

from nodekeeper.server import ramp
from nodekeeper.server.document import render
from nodekeeper.server.errors import ConflictError, InvalidRequestError, NotFoundError
from nodekeeper.server.models import ArtifactRecord
from nodekeeper.server.store import Store
from nodekeeper.version.schema import parse_announcement

ART = ArtifactRecord("linux_amd64", "ab" * 32, 1234, url="https://cdn.example/sn.zip")


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'cp.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    s = Store(url)
    s.init_schema()
    s.init_schema()  # idempotent: a second replica starting on the same database
    yield s
    s.close()


def _counts(store):
    with store.engine.connect() as conn:
        return {
            t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()
            for t in ("releases", "artifacts", "minimums", "rollouts", "audit")
        } | {"generation": store.generation()}


def test_sqlite_uses_wal(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'cp.db'}")
    s.init_schema()
    with s.engine.connect() as conn:
        assert conn.execute(sa.text("PRAGMA journal_mode")).scalar_one() == "wal"
    s.close()


def test_publish_rollout_and_audit(store):
    store.publish_release("storagenode", "1.0.0", [ART], now=100.0, remote="10.0.0.1")
    store.publish_release("storagenode", "1.1.0", [ART], now=101.0, remote="10.0.0.1")
    rollout = store.start_rollout("storagenode", "1.1.0", 24.0, now=200.0, remote="10.0.0.2")
    assert len(rollout.seed) == 64
    snap = store.snapshot(200.0 + 3600)
    process = snap.processes["storagenode"]
    assert process.minimum == "1.0.0"
    assert process.suggested == "1.1.0"
    assert ramp.percent_at(process.rollout.ramp, 200.0 + 3600) == pytest.approx(1.0)
    assert snap.generation == 3

    audit = store.audit_entries()
    assert [a["action"] for a in audit] == ["rollout.start", "release.publish", "release.publish"]
    assert audit[0]["remote"] == "10.0.0.2"
    assert audit[0]["at"] == 200.0
    assert audit[0]["detail"] == {
        "process": "storagenode",
        "version": "1.1.0",
        "rate_per_day": 24.0,
    }


def test_change_rollout_persists_the_ramp(store):
    store.publish_release("storagenode", "1.0.0", [ART], now=0.0, remote="x")
    store.publish_release("storagenode", "1.1.0", [ART], now=0.0, remote="x")
    store.start_rollout("storagenode", "1.1.0", 24.0, now=0.0, remote="x")
    store.change_rollout(
        "storagenode", "rollout.pause", lambda s: ramp.pause(s, 7200.0), now=7200.0, remote="x"
    )
    # a different Store object (another replica, or a restart) sees the same ramp
    again = Store(store.url)
    p = again.snapshot(99_999.0).processes["storagenode"]
    assert ramp.percent_at(p.rollout.ramp, 99_999.0) == pytest.approx(2.0)
    assert ramp.phase(p.rollout.ramp, 99_999.0) == "paused"
    again.close()


def test_each_rollout_gets_a_fresh_seed(store):
    for v in ("1.0.0", "1.1.0", "1.2.0"):
        store.publish_release("storagenode", v, [ART], now=0.0, remote="x")
    a = store.start_rollout("storagenode", "1.1.0", 10.0, now=0.0, remote="x")
    b = store.start_rollout("storagenode", "1.2.0", 10.0, now=1.0, remote="x")
    assert a.seed != b.seed


def test_rejected_changes_change_nothing(store):
    store.publish_release("storagenode", "1.0.0", [ART], now=0.0, remote="x")
    store.publish_release("storagenode", "1.2.0", [ART], now=0.0, remote="x")
    store.set_minimum("storagenode", "1.2.0", now=1.0, remote="x")
    before = _counts(store)
    with pytest.raises(ConflictError):
        store.publish_release("storagenode", "1.0.0", [ART], now=2.0, remote="x")
    with pytest.raises(NotFoundError):
        store.start_rollout("satellite", "1.0.0", 10.0, now=2.0, remote="x")
    with pytest.raises(InvalidRequestError):
        store.start_rollout("storagenode", "1.0.0", 10.0, now=2.0, remote="x")
    with pytest.raises(InvalidRequestError):
        store.start_rollout("storagenode", "1.2.0", -3.0, now=2.0, remote="x")
    with pytest.raises(NotFoundError):
        store.set_minimum("storagenode", "9.9.9", now=2.0, remote="x")
    with pytest.raises(ConflictError):
        store.change_rollout("storagenode", "rollout.pause", lambda s: s, now=2.0, remote="x")
    assert _counts(store) == before


def test_rendered_document_is_valid_and_deterministic(store):
    stored = ArtifactRecord("windows_amd64", "cd" * 32, 99, stored_name="storagenode/1.1.0/w/x.zip")
    store.publish_release("storagenode", "1.0.0", [ART], now=0.0, remote="x")
    store.publish_release("storagenode", "1.1.0", [ART, stored], now=0.0, remote="x")
    store.start_rollout("storagenode", "1.1.0", 50.0, now=0.0, remote="x", seed="11" * 32)
    snap = store.snapshot(ramp.DAY)
    a = render(snap, ramp.DAY, "http://cp.example")
    b = render(store.snapshot(ramp.DAY), ramp.DAY, "http://cp.example")
    assert a.body == b.body and a.etag == b.etag
    doc = parse_announcement(a.body)
    sn = doc.processes["storagenode"]
    assert sn.rollout.seed == "11" * 32
    assert sn.rollout.cursor == "7ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffb1e20"
    assert sn.suggested.artifacts["windows_amd64"].url == (
        "http://cp.example/artifacts/storagenode/1.1.0/w/x.zip"
    )
    assert sn.minimum.url == "http://cp.example/download/storagenode/1.0.0/{os}/{arch}"
    assert json.loads(a.body)["processes"]["storagenode"]["minimum"]["version"] == "1.0.0"
