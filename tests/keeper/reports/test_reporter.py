"""The reporter against a real control plane on loopback: signed reports stored,
outages, restarts, a full queue, 429, rejected reports, a hostile network."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodekeeper.keeper.reports import QueueLimits
from tests.keeper.reports.conftest import Sending, make_reporter, stored, wait_until, write_identity
from tests.server.controlplane import ControlPlane
from tests.support import free_port

pytestmark = pytest.mark.timeout(60)


def ns(rows: list[dict]) -> list[int]:
    return [r["details"]["n"] for r in rows]


def test_reports_arrive_signed_and_stored(tmp_path: Path, server: ControlPlane) -> None:
    node = write_identity(tmp_path / "node")
    reporter = make_reporter(tmp_path / "reports", tmp_path / "node", server.url)

    async def scenario() -> None:
        async with Sending(reporter):
            reporter.heartbeat("storagenode", "1.0.0")
            reporter.report(
                "rolled_back",
                "pulse failed after the update",
                process="storagenode",
                version="1.0.0",
                target_version="1.1.0",
                exit_code=1,
                schema=(3, 4),
            )
            assert await reporter.drain(10)

    asyncio.run(scenario())
    rows = stored(server, node)
    assert [r["kind"] for r in rows] == ["heartbeat", "rolled_back"]
    assert rows[1]["target_version"] == "1.1.0"
    assert rows[1]["details"] == {"exit_code": 1, "schema": [3, 4]}
    assert reporter.stats.sent == 2 and reporter.stats.attempts == 2
    view = reporter.snapshot()
    assert view["queued"] == 0 and view["sent"] == 2 and view["last_status"] == 202
    assert not list((tmp_path / "reports" / "queue").iterdir())


def test_server_down_then_up_everything_arrives_in_order_once(
    tmp_path: Path, down_url: str
) -> None:
    write_identity(tmp_path / "node")
    port = int(down_url.rsplit(":", 1)[1])
    cp = ControlPlane(tmp_path / "cp", port=port)
    reporter = make_reporter(tmp_path / "reports", tmp_path / "node", down_url)

    async def scenario() -> None:
        async with Sending(reporter):
            began = time.monotonic()
            for n in range(20):
                kind = "hang" if n % 3 == 0 else "update_succeeded"
                assert reporter.report(kind, f"r{n}", process="storagenode", version="1.0.0", n=n)
            assert time.monotonic() - began < 2.0  # queued, not sent: no waiting on the network
            await wait_until(lambda: reporter.stats.failures_in_row >= 3, 10, "failed sends")
            assert len(list((tmp_path / "reports" / "queue").iterdir())) == 20
            assert reporter.stats.last_status is None and "ConnectError" in str(
                reporter.stats.last_error
            )
            await asyncio.to_thread(cp.start)
            try:
                assert await reporter.drain(20)
            finally:
                rows = stored(cp)
                cp.stop()
        assert ns(rows) == list(range(20))
        assert len({r["report_id"] for r in rows}) == 20
        assert reporter.stats.failures_in_row == 0

    asyncio.run(scenario())


def test_keeper_restart_with_a_queue_and_a_lost_answer(tmp_path: Path, down_url: str) -> None:
    """Reports queued by one keeper are sent by the next. A report the server stored
    whose answer was lost (the keeper died before deleting it) is sent again and stored
    once."""
    write_identity(tmp_path / "node")
    first = make_reporter(tmp_path / "reports", tmp_path / "node", down_url)

    async def queue_some() -> None:
        async with Sending(first):
            for n in range(6):
                first.report("hang", f"r{n}", process="storagenode", version="1.0.0", n=n)
            await wait_until(lambda: first.stats.attempts >= 1, 10, "a failed send")

    asyncio.run(queue_some())  # the keeper stops with six reports queued
    queued = sorted((tmp_path / "reports" / "queue").iterdir())
    assert len(queued) == 6
    kept_copy = queued[0].read_bytes()

    port = int(down_url.rsplit(":", 1)[1])
    with ControlPlane(tmp_path / "cp", port=port) as cp:
        second = make_reporter(tmp_path / "reports", tmp_path / "node", cp.url)

        async def send_them() -> None:
            async with Sending(second):
                assert await second.drain(20)
                # As if the keeper had been killed after the server stored report 0 but
                # before the file was deleted: it is there again at the next start.
                queued[0].write_bytes(kept_copy)

        asyncio.run(send_them())
        third = make_reporter(tmp_path / "reports", tmp_path / "node", cp.url)

        async def resend() -> None:
            async with Sending(third):
                assert await third.drain(20)

        asyncio.run(resend())
        rows = stored(cp)
    assert ns(rows) == [0, 1, 2, 3, 4, 5]
    assert second.stats.sent == 6 and third.stats.duplicates == 1 and third.stats.sent == 0


def test_full_queue_drops_non_failures_first_and_the_count_arrives(
    tmp_path: Path, down_url: str
) -> None:
    write_identity(tmp_path / "node")
    limits = QueueLimits(max_count=5, max_bytes=1 << 20)
    reporter = make_reporter(tmp_path / "reports", tmp_path / "node", down_url, limits=limits)
    ok = "update_succeeded"
    kinds = [ok, "hang", ok, ok, "crash_loop", ok, ok, "rolled_back", ok, "out_of_space"]
    for n, kind in enumerate(kinds):
        reporter.report(kind, f"r{n}", process="storagenode", version="1.0.0", n=n)  # type: ignore[arg-type]
    # Ten reports into five places: the six successes are dropped oldest first while
    # failures wait; the newest success stays as long as there is room for it.
    assert reporter.outbox.dropped == 5
    port = int(down_url.rsplit(":", 1)[1])
    with ControlPlane(tmp_path / "cp", port=port) as cp:

        async def scenario() -> None:
            async with Sending(reporter):
                assert await reporter.drain(20)

        asyncio.run(scenario())
        rows = stored(cp)
    assert [r["kind"] for r in rows] == [
        "hang",
        "crash_loop",
        "rolled_back",
        "update_succeeded",
        "out_of_space",
    ]
    assert ns(rows) == [1, 4, 7, 8, 9]
    assert rows[0]["details"]["dropped_reports"] == 5
    assert all("dropped_reports" not in r["details"] for r in rows[1:])
    assert reporter.outbox.dropped == 0


def test_429_waits_for_retry_after_and_keeps_the_reports(tmp_path: Path) -> None:
    """The real server limits a node to --report-rate reports a minute and answers 429
    with Retry-After: 60; the test scales that wait by 0.01 (0.6 s, plus up to 20 %)."""
    write_identity(tmp_path / "node")
    port = free_port()
    limited = ControlPlane(tmp_path / "cp", port=port, extra_args=["--report-rate", "3"])
    reporter = make_reporter(tmp_path / "reports", tmp_path / "node", limited.url)

    async def scenario() -> None:
        async with Sending(reporter):
            for n in range(5):
                reporter.report("hang", f"r{n}", process="storagenode", version="1.0.0", n=n)
            await wait_until(lambda: reporter.stats.last_status == 429, 20, "a 429")
            first_429 = reporter.stats.last_attempt_at
            attempts = reporter.stats.attempts
            assert attempts == 4 and reporter.stats.sent == 3
            # Retry-After 60 × 0.01, plus up to 20 % so a fleet does not return in step.
            assert reporter.stats.last_delay is not None
            assert 0.6 <= reporter.stats.last_delay <= 0.72
            await asyncio.sleep(0.4)
            assert reporter.stats.attempts == attempts  # no try before Retry-After
            await wait_until(lambda: reporter.stats.attempts > attempts, 3, "the next try")
            assert first_429 is not None and reporter.stats.last_attempt_at is not None
            assert reporter.stats.last_attempt_at - first_429 >= 0.6
            await wait_until(lambda: reporter.stats.failures_in_row == 2, 3, "its answer")
            assert reporter.stats.last_status == 429  # still inside the server's minute
            assert len(reporter.outbox) == 2  # kept, not dropped, not rejected
            # A control plane without that limit (fresh state, same address) takes the
            # rest on the next try.
            await asyncio.to_thread(limited.stop)
            fresh = ControlPlane(tmp_path / "cp2", port=port)
            await asyncio.to_thread(fresh.start)
            try:
                assert await reporter.drain(20)
            finally:
                fresh_rows = stored(fresh)
                fresh.stop()
            assert ns(fresh_rows) == [3, 4]

    with limited:
        asyncio.run(scenario())


def test_rejected_report_is_moved_aside_and_the_rest_go_on(
    tmp_path: Path, server: ControlPlane, caplog: pytest.LogCaptureFixture
) -> None:
    """A report queued under the node's old identity, sent after `storagenode setup` made
    a new one: the server refuses it (401, signed by a key that is not that node's)."""
    old = write_identity(tmp_path / "node")
    reporter = make_reporter(tmp_path / "reports", tmp_path / "node", server.url)
    reporter.report("hang", "before", process="storagenode", version="1.0.0", n=0)
    new = write_identity(tmp_path / "node")
    for n in (1, 2):
        reporter.report("hang", "after", process="storagenode", version="1.0.0", n=n)

    async def scenario() -> None:
        async with Sending(reporter):
            assert await reporter.drain(20)

    asyncio.run(scenario())
    rows = stored(server, new)
    assert ns(rows) == [1, 2] and stored(server, old) == []
    assert reporter.stats.rejected == 1 and reporter.stats.sent == 2
    [aside] = list((tmp_path / "reports" / "rejected").iterdir())
    note = json.loads(aside.read_text())
    assert note["status"] == 401 and "another node" in note["reason"]
    assert json.loads(note["record"])["node_id"] == old.node_id_text != new.node_id_text
    assert "can never accept report" in caplog.text and "401" in caplog.text


def test_no_identity_holds_reports_until_the_node_is_set_up(
    tmp_path: Path, server: ControlPlane
) -> None:
    reporter = make_reporter(tmp_path / "reports", tmp_path / "node", server.url)

    async def scenario() -> None:
        async with Sending(reporter):
            assert reporter.report("crash_loop", "x", process="storagenode", version="1.0.0")
            await wait_until(lambda: reporter.stats.identity_error is not None, 5, "the error")
            assert "not set up yet" in str(reporter.stats.identity_error)
            await asyncio.sleep(0.2)
            assert len(reporter.outbox) == 1 and reporter.stats.attempts == 0
            node = write_identity(tmp_path / "node")
            assert await reporter.drain(10)
            assert reporter.stats.identity_error is None
            return node

    node = asyncio.run(scenario())
    [row] = stored(server, node)
    assert row["kind"] == "crash_loop"


@pytest.fixture
def hostile() -> Iterator[dict[str, str]]:
    """Three real peers that are no control plane: one accepts and never answers, one
    answers garbage, one answers 500 with an endless body."""
    servers: list[socket.socket] = []
    stop = threading.Event()

    def serve(behaviour: str) -> str:
        sock = socket.create_server(("127.0.0.1", 0))
        sock.settimeout(0.1)
        servers.append(sock)

        def loop() -> None:
            held = []
            while not stop.is_set():
                try:
                    conn, _ = sock.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                held.append(conn)
                threading.Thread(target=talk, args=(conn,), daemon=True).start()
            for conn in held:
                conn.close()

        def talk(conn: socket.socket) -> None:
            try:
                conn.recv(65536)
                if behaviour == "garbage":
                    conn.sendall(b"\x00\xffNOT HTTP AT ALL\r\n\r\n")
                    conn.close()
                elif behaviour == "endless":
                    conn.sendall(b"HTTP/1.1 500 Oops\r\nContent-Length: 1000000000\r\n\r\n")
                    while not stop.is_set():
                        conn.sendall(b"x" * 65536)
            except OSError:
                pass

        threading.Thread(target=loop, daemon=True).start()
        return f"http://127.0.0.1:{sock.getsockname()[1]}"

    urls = {name: serve(name) for name in ("silent", "garbage", "endless")}
    yield urls
    stop.set()
    for sock in servers:
        sock.close()


@pytest.mark.parametrize("peer", ["refused", "silent", "garbage", "endless"])
def test_a_bad_network_never_reaches_the_caller(
    tmp_path: Path, hostile: dict[str, str], down_url: str, peer: str
) -> None:
    write_identity(tmp_path / "node")
    url = down_url if peer == "refused" else hostile[peer]
    reporter = make_reporter(tmp_path / "reports", tmp_path / "node", url, request_timeout=0.3)
    timing_budget = 0.5

    async def scenario() -> None:
        async with Sending(reporter) as running:
            for n in range(3):
                began = time.monotonic()
                assert running.report("hang", "x", process="storagenode", version="1.0.0", n=n)
                assert time.monotonic() - began < timing_budget
            await wait_until(lambda: running.stats.failures_in_row >= 2, 15, "failed sends")
            assert len(running.outbox) == 3  # nothing lost, nothing rejected
            assert running.stats.rejected == 0 and running.stats.sent == 0

    asyncio.run(scenario())
    assert len(list((tmp_path / "reports" / "queue").iterdir())) == 3


def test_queue_survives_its_directory_being_moved_under_it(
    tmp_path: Path, server: ControlPlane
) -> None:
    """A disk that refuses writes mid-run: reports are held in memory and still sent."""
    node = write_identity(tmp_path / "node")
    reporter = make_reporter(tmp_path / "reports", tmp_path / "node", server.url)
    shutil.rmtree(tmp_path / "reports" / "queue")
    (tmp_path / "reports" / "queue").write_bytes(b"not a directory")

    async def scenario() -> None:
        async with Sending(reporter):
            assert reporter.report(
                "out_of_space", "disk full", process="storagenode", version="1.0.0", n=0
            )
            assert await reporter.drain(10)

    asyncio.run(scenario())
    assert ns(stored(server, node)) == [0]


def test_bad_fields_are_logged_never_raised(
    tmp_path: Path, down_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    reporter = make_reporter(tmp_path / "reports", tmp_path / "node", down_url)
    assert reporter.report("hang", "x", process="storagenode", version="not a version") is None
    assert reporter.report("nonsense", "x", process="storagenode", version="1.0.0") is None  # type: ignore[arg-type]
    assert reporter.report("hang", "x", process="Bad Name", version="1.0.0") is None
    assert len(reporter.outbox) == 0
    assert caplog.text.count("cannot queue a") == 3
    assert reporter.report("hang", "x", process="storagenode", version="1.0.0") is not None


def test_a_missing_ca_bundle_is_logged_not_fatal(
    tmp_path: Path, server: ControlPlane, caplog: pytest.LogCaptureFixture
) -> None:
    node = write_identity(tmp_path / "node")
    reporter = make_reporter(
        tmp_path / "reports", tmp_path / "node", server.url, ca_bundle=str(tmp_path / "nope.pem")
    )

    async def scenario() -> None:
        async with Sending(reporter):
            reporter.report("hang", "x", process="storagenode", version="1.0.0", n=0)
            assert await reporter.drain(10)

    asyncio.run(scenario())
    assert ns(stored(server, node)) == [0]
    assert "cannot load the CA bundle" in caplog.text
