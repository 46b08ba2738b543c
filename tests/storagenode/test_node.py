"""A real node process on loopback: pieces, quota, concurrency, pulse and stop."""

from __future__ import annotations

import hashlib
import http.client
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from storagenode import exitcodes
from tests.nodes import NodeProcess, NodeSetup, setup_node

HASH = "X-Content-SHA256"


def put(url: str, piece_id: str, data: bytes, digest: str | None = None) -> httpx.Response:
    headers = {HASH: digest or hashlib.sha256(data).hexdigest()}
    return httpx.put(f"{url}/pieces/{piece_id}", content=data, headers=headers, timeout=30)


def test_round_trip_checks_the_hash(node: NodeProcess) -> None:
    url = node.setup.url
    data = os.urandom(1_500_000)
    response = put(url, "piece-1", data)
    assert response.status_code == 201, response.text
    assert response.json() == {
        "id": "piece-1",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    got = httpx.get(f"{url}/pieces/piece-1", timeout=30)
    assert got.status_code == 200
    assert got.content == data
    assert got.headers[HASH] == hashlib.sha256(data).hexdigest()

    assert put(url, "empty", b"").status_code == 201
    assert httpx.get(f"{url}/pieces/empty").content == b""

    bad = put(url, "piece-2", data, digest="0" * 64)
    assert bad.status_code == 400 and "hash mismatch" in bad.json()["error"]
    assert httpx.get(f"{url}/pieces/piece-2").status_code == 404
    no_hash = httpx.put(f"{url}/pieces/piece-3", content=b"abc")
    assert no_hash.status_code == 400 and HASH in no_hash.json()["error"]
    assert put(url, "piece-1", data).status_code == 409
    assert put(url, "bad.id", b"x").status_code == 400
    assert node.pulse()["used_bytes"] == len(data)


def test_upload_without_length_is_refused(node: NodeProcess) -> None:
    def body() -> Iterator[bytes]:
        yield b"abc"

    response = httpx.put(
        f"{node.setup.url}/pieces/chunked",
        content=body(),
        headers={HASH: hashlib.sha256(b"abc").hexdigest()},
    )
    assert response.status_code == 411


def test_delete(node: NodeProcess) -> None:
    url = node.setup.url
    assert put(url, "d", b"12345").status_code == 201
    assert httpx.delete(f"{url}/pieces/d").status_code == 204
    assert httpx.get(f"{url}/pieces/d").status_code == 404
    assert httpx.delete(f"{url}/pieces/d").status_code == 404
    assert node.pulse()["used_bytes"] == 0
    assert httpx.get(f"{url}/other").status_code == 404


def test_pulse_reports_what_the_keeper_reads(node: NodeProcess) -> None:
    pulse = node.pulse()
    assert {
        "version",
        "node_id",
        "uptime_seconds",
        "schema_version",
        "used_bytes",
        "allocated_bytes",
    } <= pulse.keys()
    assert pulse["version"] == "0.0.0-dev"
    assert pulse["allocated_bytes"] == 50 * 10**6
    assert pulse["schema_version"] >= 2
    info = httpx.get(f"{node.setup.control_url}/pulse").json()
    assert info["uptime_seconds"] >= pulse["uptime_seconds"]
    # The control address serves no pieces and the public one no pulse.
    assert httpx.get(f"{node.setup.url}/pulse").status_code == 404
    assert httpx.get(f"{node.setup.control_url}/pieces/x").status_code == 404


def test_quota_is_enforced_and_a_full_node_stays_up(tmp_path: Path) -> None:
    setup = setup_node(tmp_path, allocated="3 MB")
    with NodeProcess(setup).start() as node:
        node.wait_ready()
        url = setup.url
        assert put(url, "a", os.urandom(2_000_000)).status_code == 201
        full = put(url, "b", os.urandom(1_500_000))
        assert full.status_code == 507
        assert "1000000 free of 3000000 allocated" in full.json()["error"]
        assert node.pulse()["used_bytes"] == 2_000_000
        assert put(url, "c", os.urandom(1_000_000)).status_code == 201  # exactly full
        assert httpx.delete(f"{url}/pieces/a").status_code == 204
        assert put(url, "b", os.urandom(1_500_000)).status_code == 201


def test_concurrent_uploads(tmp_path: Path) -> None:
    setup = setup_node(tmp_path, allocated="10 MB")
    blobs = {f"p{i}": os.urandom(1_000_000) for i in range(16)}
    results: dict[str, int] = {}

    def upload(piece_id: str) -> None:
        results[piece_id] = put(setup.url, piece_id, blobs[piece_id]).status_code

    with NodeProcess(setup).start() as node:
        node.wait_ready()
        threads = [threading.Thread(target=upload, args=(p,)) for p in blobs]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        # 16 uploads of 1 MB race for 10 MB: exactly ten win, the rest are told it is full.
        stored = sorted(p for p, status in results.items() if status == 201)
        assert len(stored) == 10
        assert sorted(results.values()) == [201] * 10 + [507] * 6
        for piece_id in stored:
            got = httpx.get(f"{setup.url}/pieces/{piece_id}", timeout=30)
            assert got.content == blobs[piece_id]
        assert node.pulse()["used_bytes"] == 10_000_000
        assert list((setup.storage_dir / "temp").iterdir()) == []


def test_large_piece_streams_without_buffering(node: NodeProcess) -> None:
    size, chunk = 40 * 2**20, os.urandom(2**20)
    digest = hashlib.sha256(chunk * 40).hexdigest()
    rss_before = psutil.Process(node.pid).memory_info().rss

    def body() -> Iterator[bytes]:
        for _ in range(40):
            yield chunk

    response = httpx.put(
        f"{node.setup.url}/pieces/big",
        content=body(),
        headers={HASH: digest, "Content-Length": str(size)},
        timeout=60,
    )
    assert response.status_code == 201, response.text
    h = hashlib.sha256()
    with httpx.stream("GET", f"{node.setup.url}/pieces/big", timeout=60) as got:
        for part in got.iter_bytes():
            h.update(part)
    assert h.hexdigest() == digest
    grew = psutil.Process(node.pid).memory_info().rss - rss_before
    assert grew < 16 * 2**20, f"node memory grew by {grew} bytes for a 40 MiB piece"


def test_shutdown_needs_the_token(node: NodeProcess) -> None:
    control = node.setup.control_url
    assert httpx.post(f"{control}/shutdown").status_code == 401
    wrong = httpx.post(f"{control}/shutdown", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403
    assert node.pulse()["stopping"] is False
    assert node.shutdown().status_code == 202
    assert node.wait() == exitcodes.OK
    levels = {line["level"] for line in node.log_lines()}
    assert levels <= {"DEBUG", "INFO", "WARNING", "ERROR"}
    assert [line["msg"] for line in node.log_lines()][-1] == "node stopped"


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_signals_stop_gracefully(node_setup: NodeSetup, signame: str) -> None:
    import signal

    with NodeProcess(node_setup).start() as node:
        node.wait_ready()
        os.kill(node.pid, getattr(signal, signame))
        assert node.wait() == exitcodes.OK
        assert any(f"signal {signame}" in str(line.get("reason")) for line in node.log_lines())


def test_second_node_on_a_taken_port_fails_clearly(node: NodeProcess) -> None:
    with NodeProcess(node.setup).start() as second:
        assert second.wait() == exitcodes.FAILURE
        assert "cannot listen on" in second.log()
    assert node.pulse()["version"]


def test_raw_http_client_gets_a_response_for_a_refused_body(node: NodeProcess) -> None:
    # A refused upload's body is drained, so even a client that sends it all first reads
    # the answer instead of a connection reset.
    conn = http.client.HTTPConnection("127.0.0.1", node.setup.port, timeout=10)
    data = os.urandom(4 * 2**20)
    conn.request("PUT", "/pieces/x", body=data, headers={HASH: "zz"})
    response = conn.getresponse()
    assert response.status == 400
    conn.close()
