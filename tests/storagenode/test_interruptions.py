"""Stops in the middle of an upload, and databases from other versions, on real processes."""

from __future__ import annotations

import hashlib
import http.client
import os
import time
from pathlib import Path

import httpx

from storagenode import exitcodes, migrations
from storagenode.store import DB_FILE, open_database
from tests.nodes import DEV_NODE, NodeProcess, NodeSetup, run_once

HASH = "X-Content-SHA256"


def _start_upload(setup: NodeSetup, piece_id: str, data: bytes) -> http.client.HTTPConnection:
    """Send the headers and the first half of the body, then leave the upload hanging."""
    conn = http.client.HTTPConnection("127.0.0.1", setup.port, timeout=30)
    conn.putrequest("PUT", f"/pieces/{piece_id}")
    conn.putheader("Content-Length", str(len(data)))
    conn.putheader(HASH, hashlib.sha256(data).hexdigest())
    conn.endheaders()
    conn.send(data[: len(data) // 2])
    return conn


def _wait_for_temp_file(setup: NodeSetup) -> None:
    deadline = time.monotonic() + 10
    while not any((setup.storage_dir / "temp").iterdir()):
        assert time.monotonic() < deadline, "the upload never reached the node"
        time.sleep(0.01)


def _get(setup: NodeSetup, piece_id: str) -> httpx.Response:
    return httpx.get(f"{setup.url}/pieces/{piece_id}", timeout=30)


def test_graceful_shutdown_finishes_the_upload_in_flight(node_setup: NodeSetup) -> None:
    data = os.urandom(3_000_000)
    with NodeProcess(node_setup).start() as node:
        node.wait_ready()
        conn = _start_upload(node_setup, "inflight", data)
        _wait_for_temp_file(node_setup)
        assert node.shutdown().status_code == 202
        # The node stops taking new work at once but stays up for the upload in flight.
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(f"{node_setup.url}/pieces/other", timeout=1)
            except httpx.ConnectError:
                break
            except httpx.TransportError:
                pass  # accepted by the kernel just before the listener closed, then reset
            assert time.monotonic() < deadline, "still accepting connections after shutdown"
            time.sleep(0.02)
        assert node.pulse()["stopping"] is True
        assert node.proc is not None and node.proc.poll() is None
        conn.send(data[len(data) // 2 :])
        response = conn.getresponse()
        assert response.status == 201, response.read()
        assert node.wait() == exitcodes.OK

    with NodeProcess(node_setup).start() as again:
        again.wait_ready()
        assert _get(node_setup, "inflight").content == data


def test_kill_9_mid_upload_keeps_acknowledged_pieces_and_shows_no_partial_one(
    node_setup: NodeSetup,
) -> None:
    kept = os.urandom(1_000_000)
    partial = os.urandom(2_000_000)
    with NodeProcess(node_setup).start() as node:
        node.wait_ready()
        ack = httpx.put(
            f"{node_setup.url}/pieces/kept",
            content=kept,
            headers={HASH: hashlib.sha256(kept).hexdigest()},
        )
        assert ack.status_code == 201
        conn = _start_upload(node_setup, "partial", partial)
        _wait_for_temp_file(node_setup)
        node.kill9()
        conn.close()
    assert any((node_setup.storage_dir / "temp").iterdir())  # the crash left its temp file

    with NodeProcess(node_setup).start() as again:
        pulse = again.wait_ready()
        assert _get(node_setup, "kept").content == kept
        assert _get(node_setup, "partial").status_code == 404
        assert pulse["used_bytes"] == len(kept)
        assert list((node_setup.storage_dir / "temp").iterdir()) == []
        assert any("leftovers" in line["msg"] for line in again.log_lines())
        # The interrupted piece can be uploaded again from scratch.
        retry = httpx.put(
            f"{node_setup.url}/pieces/partial",
            content=partial,
            headers={HASH: hashlib.sha256(partial).hexdigest()},
        )
        assert retry.status_code == 201


def test_node_migrates_a_database_made_by_an_older_version(node_setup: NodeSetup) -> None:
    # What an older release (schema 1) would have left: its table, one piece, its file.
    conn = open_database(node_setup.storage_dir / DB_FILE)
    migrations.migrate(conn, migrations.MIGRATIONS[:1])
    conn.execute(
        "INSERT INTO pieces VALUES ('old', 3, ?, '2020-01-01T00:00:00Z')",
        (hashlib.sha256(b"old").hexdigest(),),
    )
    conn.close()
    from storagenode.store import blob_name

    blob = node_setup.storage_dir / "blobs" / blob_name("old")[:2] / blob_name("old")
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"old")

    with NodeProcess(node_setup).start() as node:
        pulse = node.wait_ready()
        assert pulse["schema_version"] == migrations.code_version(migrations.MIGRATIONS) > 1
        assert pulse["used_bytes"] == 3
        assert _get(node_setup, "old").content == b"old"


def test_node_refuses_a_newer_database(node_setup: NodeSetup) -> None:
    newer = [
        *migrations.MIGRATIONS,
        migrations.Migration(len(migrations.MIGRATIONS) + 1, "future", migrations.sql("SELECT 1")),
    ]
    conn = open_database(node_setup.storage_dir / DB_FILE)
    migrations.migrate(conn, newer)
    conn.close()
    before = (node_setup.storage_dir / DB_FILE).read_bytes()
    result = run_once(DEV_NODE, "run", "--config-dir", str(node_setup.config_dir))
    assert result.returncode == exitcodes.DOWNGRADE_REFUSED == 65
    assert "downgrade not supported" in result.stderr
    assert (node_setup.storage_dir / DB_FILE).read_bytes() == before


def test_config_dir_outlives_a_restart_with_the_same_identity(node_setup: NodeSetup) -> None:
    with NodeProcess(node_setup).start() as node:
        first = node.wait_ready()["node_id"]
        node.terminate()
        assert node.wait() == 0
    with NodeProcess(node_setup).start() as node:
        assert node.wait_ready()["node_id"] == first


def test_storage_dir_of_another_node_is_refused(tmp_path: Path, node_setup: NodeSetup) -> None:
    (node_setup.storage_dir / "storage-dir-verification").write_text("1SomeOtherNode\n")
    result = run_once(DEV_NODE, "run", "--config-dir", str(node_setup.config_dir))
    assert result.returncode == exitcodes.STORAGE_UNAVAILABLE
    assert "belongs to node 1SomeOtherNode" in result.stderr


def test_client_hanging_up_mid_upload_leaves_nothing(node: NodeProcess) -> None:
    setup = node.setup
    data = os.urandom(2_000_000)
    conn = _start_upload(setup, "dropped", data)
    _wait_for_temp_file(setup)
    conn.close()
    deadline = time.monotonic() + 10
    while any((setup.storage_dir / "temp").iterdir()):
        assert time.monotonic() < deadline, "the temp file of a dropped upload stayed"
        time.sleep(0.02)
    assert _get(setup, "dropped").status_code == 404
    assert node.pulse()["used_bytes"] == 0
    retry = httpx.put(
        f"{setup.url}/pieces/dropped",
        content=data,
        headers={HASH: hashlib.sha256(data).hexdigest()},
    )
    assert retry.status_code == 201  # the dropped upload's reservation was released
    assert any(line["msg"] == "upload interrupted by client" for line in node.log_lines())
