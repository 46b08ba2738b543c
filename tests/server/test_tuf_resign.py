"""Re-signing the online TUF roles before they expire, and the expiry warnings (decision
084), with the server's clock driven by the test (ServerSettings.clock): a real server on
loopback re-signs the timestamp before half its period and a keeper's Updater takes it; two
replicas over one database (SQLite and PostgreSQL) re-sign once; /metrics and the log
say what expires.

tuf.ngclient reads the real clock, so the driven clock only ever moves forward from the
real time: what the server signs then expires later than the keeper's now, never before."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from tuf.api.metadata import Metadata

from nodekeeper.server.auth import AdminToken
from nodekeeper.server.client import AdminClient
from nodekeeper.server.runner import build_server
from nodekeeper.server.settings import ServerSettings
from nodekeeper.server.store import Store
from nodekeeper.server.tuf_expiry import DAY
from nodekeeper.server.tuf_keys import load_signer
from nodekeeper.server.tuf_publish import next_targets
from nodekeeper.server.tuf_repo import TufRepository
from nodekeeper.signing.layout import target_path
from tests.support import free_port

from .releases import release_zip
from .tufrepo import make_keys, updater

TOKEN = "tuf-resign-token-0123456789"
HOUR = 3600.0


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _wait(check, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def keys(tmp_path):
    return make_keys(tmp_path / "keys")


@pytest.fixture
def driven(tmp_path, keys):
    """A control plane with a driven clock, the online keys, a root and one signed release."""
    clock = Clock()
    port = free_port()
    settings = ServerSettings(
        db_url=f"sqlite:///{tmp_path / 'cp.db'}",
        data_dir=tmp_path / "cp",
        public_url=f"http://127.0.0.1:{port}",
        admin_token=AdminToken(TOKEN, "test"),
        clock=clock,
        poll_interval=0.05,
        tuf_interval=0.05,
        tuf_online_keys=keys.online,
    )
    server = build_server(settings, "127.0.0.1", port, log_level="warning")
    thread = threading.Thread(target=server.run, name="tuf-cp", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(url + "/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        _wait(up, "the control plane to answer")
        client = AdminClient(url, TOKEN)
        client.request("POST", "/v1/admin/tuf/root", json={"root": keys.root_file.read_text()})
        release_zip(tmp_path / "sn.zip", "1.0.0")
        client.publish(
            "storagenode",
            "1.0.0",
            {"linux_amd64": str(tmp_path / "sn.zip")},
            targets_key=load_signer(keys.targets_key),
            trusted_root=keys.root_file.read_bytes(),
        )
        client.close()
        yield url, clock
    finally:
        server.should_exit = True
        thread.join(30)


def _served(url: str, name: str = "timestamp.json") -> Metadata:
    return Metadata.from_bytes(httpx.get(f"{url}/tuf/metadata/{name}").content)


def test_the_server_resigns_the_timestamp_and_snapshot_before_half_their_period(
    driven, keys, tmp_path
):
    url, clock = driven
    assert _served(url).signed.version == 1
    # 13 h on: past half the timestamp's day, not the snapshot's 3.5 days.
    clock.now += 13 * HOUR
    ts = _wait(lambda: (t := _served(url)).signed.version == 2 and t, "timestamp v2")
    assert ts.signed.snapshot_meta.version == 1  # the same snapshot, named again
    assert ts.signed.expires.timestamp() == pytest.approx(clock.now + DAY, abs=1)
    # 4 days on: the snapshot is due too; it and a timestamp naming it are signed.
    clock.now += 3 * DAY
    _wait(lambda: _served(url).signed.snapshot_meta.version == 2, "snapshot v2")
    assert _served(url, "2.snapshot.json").signed.meta["targets.json"].version == 1
    # A keeper takes the re-signed metadata (its clock is the real one, earlier).
    info = updater(url, keys, tmp_path / "keeper").get_targetinfo(
        target_path("storagenode", "1.0.0", "linux_amd64")
    )
    assert info is not None


def test_expiry_gauges_and_warnings_when_the_online_keys_are_gone(driven, keys, caplog):
    url, clock = driven
    metrics = httpx.get(url + "/metrics").text
    assert 'nodekeeper_cp_tuf_expiry_seconds{role="timestamp"}' in metrics
    assert 'nodekeeper_cp_tuf_version{role="root"} 1.0' in metrics
    caplog.set_level(logging.WARNING, logger="nodekeeper.server.tuf")
    (keys.online / "timestamp.pem").unlink()  # the key is lost: nothing can re-sign
    clock.now += 20 * HOUR

    def warned() -> bool:
        lines = [r.getMessage() for r in caplog.records]
        return any("was not re-signed" in line for line in lines) and any(
            "do not include timestamp" in line for line in lines
        )

    _wait(warned, "the warnings in the log")
    left = _gauge(httpx.get(url + "/metrics").text, "timestamp")
    assert 0 < left <= 4 * HOUR + 1
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        status = c.get("/v1/admin/tuf").json()
    assert "was not re-signed" in status["roles"]["timestamp"]["warning"]
    assert any("do not include timestamp" in p for p in status["problems"])
    clock.now += 5 * HOUR
    assert _gauge(httpx.get(url + "/metrics").text, "timestamp") < 0


def _gauge(text: str, role: str) -> float:
    for line in text.splitlines():
        if line.startswith(f'nodekeeper_cp_tuf_expiry_seconds{{role="{role}"}}'):
            return float(line.split()[-1])
    raise AssertionError(f"no expiry gauge for {role}:\n{text}")


# -- two replicas over one database ---------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'cp.db'}"
    return request.getfixturevalue("pg_url")


def test_two_replicas_resign_once(db_url, keys):
    """Each replica is its own Store (engine, connections) and TufRepository over the same
    database, as two server processes would be; both look when the timestamp is due."""
    now = time.time()
    stores = [Store(db_url), Store(db_url)]
    try:
        for store in stores:
            store.init_schema()
        replicas = [TufRepository(store, keys.online) for store in stores]
        replicas[0].install_root(keys.root_file.read_bytes(), now)
        data, _version = next_targets(
            keys.root_file.read_bytes(), None, load_signer(keys.targets_key), [], None, now
        )
        md = replicas[0].check_targets(data, replicas[0].root(), {}, {}, now)
        with stores[0].engine.begin() as conn:
            replicas[0].write_targets(conn, data, md, now)
        assert [r.maintain(now + HOUR) for r in replicas] == [[], []]  # nothing due yet

        later = now + 13 * HOUR
        for _round in range(3):  # a few rounds: each must sign once in all, not once each
            barrier = threading.Barrier(2, timeout=30)

            def look(replica: TufRepository, at: float = later, wait=barrier) -> list[str]:
                wait.wait()
                return replica.maintain(at)

            with ThreadPoolExecutor(2) as pool:
                done = [f.result(timeout=60) for f in [pool.submit(look, r) for r in replicas]]
            signed = [d for d in done if d]
            assert len(signed) == 1, done  # the other lost the race or found it done
            later += 13 * HOUR
        versions = {e.role: e.version for e in replicas[1].expiries()}
        # Three rounds 13 h apart: three new timestamps; the third round also passed the
        # snapshot's half period (39 h < 3.5 d: no), so the snapshot is still v1.
        assert versions == {"root": 1, "targets": 1, "snapshot": 1, "timestamp": 4}
    finally:
        for store in stores:
            store.close()


def test_pruning_keeps_every_root_and_what_a_timestamp_in_the_wild_names(tmp_path, keys):
    now = time.time()
    store = Store(f"sqlite:///{tmp_path / 'cp.db'}")
    try:
        store.init_schema()
        repo = TufRepository(store, keys.online)
        repo.install_root(keys.root_file.read_bytes(), now)
        signer = load_signer(keys.targets_key)
        current = None
        for _publish in range(6):  # six targets versions, each with a snapshot and timestamp
            data, _ = next_targets(keys.root_file.read_bytes(), current, signer, [], None, now)
            md = repo.check_targets(data, repo.root(), {}, {}, now)
            with store.engine.begin() as conn:
                repo.write_targets(conn, data, md, now)
            current = data
        for step in range(1, 4):  # then 39 h of re-signing, pruning as it goes
            repo.maintain(now + step * 13 * HOUR)
        kept = _versions(store)
    finally:
        store.close()
    assert kept["root"] == [1]
    # 6 publishes at `now` and 3 re-signs: timestamps signed at now + 26 h and + 39 h are
    # unexpired at + 39 h; the newest is always kept.
    assert kept["timestamp"] == [8, 9]
    assert kept["snapshot"] == [4, 5, 6]  # the newest three (all name targets v6)
    assert kept["targets"] == [4, 5, 6]


def _versions(store: Store) -> dict[str, list[int]]:
    import sqlalchemy as sa

    from nodekeeper.server.store import tuf_metadata_table as t

    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(t.c.role, t.c.version).order_by(t.c.version)).all()
    out: dict[str, list[int]] = {}
    for role, version in rows:
        out.setdefault(role, []).append(version)
    return out


def test_an_offline_key_in_the_online_dir_is_called_out(tmp_path, keys, caplog):
    import shutil

    store = Store(f"sqlite:///{tmp_path / 'cp.db'}")
    try:
        store.init_schema()
        repo = TufRepository(store, keys.online)
        repo.install_root(keys.root_file.read_bytes(), time.time())
        shutil.copy(keys.targets_key, keys.online / "targets-1.pem")
        caplog.set_level(logging.ERROR, logger="nodekeeper.server.tuf")
        repo.signers(repo.root().signed)
        repo.signers(repo.root().signed)
    finally:
        store.close()
    said = [r.getMessage() for r in caplog.records if "holds the offline" in r.getMessage()]
    assert len(said) == 1 and "targets key" in said[0], said
