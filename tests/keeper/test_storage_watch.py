"""The storage watch's I/O shell (keeper.storage_watch) and the alert hub
(keeper.alerting) in this process: real directories, a real reference node's setup, a
real tmpfs filled up, a verification file that hangs the look (a FIFO), a real HTTP
server's Date header, a real webhook receiver."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from nodekeeper.alerts import AlertDispatcher, WebhookChannel
from nodekeeper.alerts.debounce import DebouncePolicy
from nodekeeper.keeper.alerting import AlertHub
from nodekeeper.keeper.config import KeeperConfig
from nodekeeper.keeper.storage_watch import NodeWatch, ServerClock, node_paths
from nodekeeper.keeper.supervisor import Supervisor
from nodekeeper.keeper.wiring import Keeper
from nodekeeper.platform import current_platform
from tests.alerts.receivers import http_receiver
from tests.keeper.conftest import ListErrors, ListSink, fast_settings, program
from tests.support import free_port

pytestmark = pytest.mark.timeout(60)
MARKER = "storage-dir-verification"


def setup_node(tmp_path: Path, storage: Path) -> Path:
    """`storagenode setup` for real; returns the node's config dir."""
    config_dir = tmp_path / "node"
    subprocess.run(
        [
            str(Path(sys.executable).parent / "storagenode"),
            "setup",
            "--config-dir", str(config_dir),
            "--storage-dir", str(storage),
            "--allocated", "1 MB",
            "--listen", f"127.0.0.1:{free_port()}",
            "--control-listen", f"127.0.0.1:{free_port()}",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return config_dir


def watch_for(tmp_path: Path, config_dir: Path, **kwargs: Any) -> tuple[NodeWatch, ListErrors]:
    config = KeeperConfig.model_validate(
        fast_settings(tmp_path, program("pulse_node.py"), node={"config_dir": str(config_dir)})
    )
    errors = ListErrors()
    supervisor = Supervisor(config, current_platform(), sink=ListSink(), errors=errors)
    return NodeWatch(config, supervisor, errors, **kwargs), errors


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One reference node set up for the module: (config dir, storage dir)."""
    root = tmp_path_factory.mktemp("node")
    return setup_node(root, root / "storage"), root / "storage"


def test_node_paths_of_the_reference_node_and_of_a_storj_node(
    tmp_path: Path, node: tuple[Path, Path]
) -> None:
    config_dir, storage = node
    paths = node_paths(config_dir)
    assert (paths.storage_dir, paths.identity) == (storage, config_dir / "identity.key")
    storj = tmp_path / "storj"
    storj.mkdir()
    (storj / "config.yaml").write_text(
        "# Storj\nidentity.key-path: /id/identity.key\nstorage.path: 'D:\\Storj' # pieces\n"
    )
    paths = node_paths(storj)
    assert (paths.storage_dir, paths.identity) == (Path("D:\\Storj"), Path("/id/identity.key"))
    assert node_paths(tmp_path / "nothing").config_file is None


def test_a_node_not_set_up_has_no_problems(tmp_path: Path) -> None:
    watch, errors = watch_for(tmp_path, tmp_path / "never-set-up")
    assert asyncio.run(watch.tick()) == {}
    assert watch.node.held is None and errors.records == []


def test_the_identity_key_gone_and_back(tmp_path: Path) -> None:
    config_dir = setup_node(tmp_path, tmp_path / "storage")
    key = config_dir / "identity.key"
    watch, errors = watch_for(tmp_path, config_dir)

    async def scenario() -> None:
        assert await watch.tick() == {}
        key.rename(tmp_path / "identity.key.saved")
        problems = await watch.tick()
        # The verification file is still accepted (whose it is cannot be told now): the
        # node is not held for a missing key; it will not start without it anyway.
        assert list(problems) == ["identity_missing"]
        assert watch.node.held is None
        await watch.tick()  # still missing: not indexed again
        (tmp_path / "identity.key.saved").rename(key)
        assert await watch.tick() == {}

    asyncio.run(scenario())
    [record] = errors.records
    assert record["reason"] == "identity-missing" and record["level"] == logging.ERROR
    assert f"the node's identity key {key} is missing" in record["message"]
    assert "backup" in record["fix"]


def test_another_nodes_verification_file_holds_and_the_right_one_releases(
    tmp_path: Path,
) -> None:
    storage = tmp_path / "storage"
    config_dir = setup_node(tmp_path, storage)
    ours = (storage / MARKER).read_bytes()
    watch, errors = watch_for(tmp_path, config_dir)

    async def scenario() -> None:
        (storage / MARKER).write_bytes(b"1SomeoneElse\n")
        await watch.tick()
        held = watch.node.held
        assert held is not None and "belongs to node 1SomeoneElse" in held.reason
        (storage / MARKER).write_bytes(ours)
        assert await watch.tick() == {}
        assert watch.node.held is None

    asyncio.run(scenario())
    assert [r["reason"] for r in errors.records] == ["storage-missing"]


def test_a_look_that_hangs_holds_the_node_and_does_not_hold_the_keeper(
    tmp_path: Path,
) -> None:
    """The verification file is a FIFO: opening it blocks in the kernel until a writer
    comes, as a read on a dead network share does. The look's deadline holds the node;
    while that look hangs no second one starts; once it ends, the next look releases."""
    storage = tmp_path / "storage"
    config_dir = setup_node(tmp_path, storage)
    ours = (storage / MARKER).read_bytes()
    (storage / MARKER).unlink()
    os.mkfifo(storage / MARKER)
    watch, errors = watch_for(tmp_path, config_dir, timeout=0.5)

    async def scenario() -> None:
        problems = await asyncio.wait_for(watch.tick(), 5)
        held = watch.node.held
        assert held is not None and "did not answer within 0.5 s" in held.reason
        assert "storage_missing" in problems
        # The hung look is still in its thread: the next tick starts none beside it.
        await asyncio.wait_for(watch.tick(), 1)
        assert watch.node.held is not None
        # The share answers again: the blocked open gets its writer, the file is real.
        fd = os.open(storage / MARKER, os.O_WRONLY)
        os.write(fd, ours)
        os.close(fd)
        (storage / MARKER).unlink()
        (storage / MARKER).write_bytes(ours)
        for _ in range(100):  # the hung thread ends at once now; a deadline, no sleep-proof
            if await watch.tick() == {}:
                break
            await asyncio.sleep(0.05)
        assert watch.node.held is None

    asyncio.run(scenario())
    assert [r["reason"] for r in errors.records] == ["storage-missing"]


def test_a_nearly_full_disk_is_said_once_and_clears(tmp_path: Path) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("mounts a tmpfs: Linux only")
    mnt = tmp_path / "small"
    mnt.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        config_dir = setup_node(tmp_path, mnt)
        watch, errors = watch_for(tmp_path, config_dir)
        filler = mnt / "filler"

        async def scenario() -> None:
            assert await watch.tick() == {}
            with open(filler, "wb") as fh:  # fill to under 5 % free
                free = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize
                fh.write(b"\0" * (free - 16 * 1024))
            problems = await watch.tick()
            assert list(problems) == ["disk_full"]
            assert watch.node.held is None  # a full disk is said, not held
            assert watch.snapshot()["disk"]["free"] < 0.05 * watch.snapshot()["disk"]["total"]
            filler.unlink()
            assert await watch.tick() == {}

        asyncio.run(scenario())
        [record] = errors.records
        assert record["reason"] == "disk-full" and f"the disk holding {mnt}" in record["message"]
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture
def skewed_server() -> Iterator[str]:
    """A real HTTP server whose Date header is two hours ahead."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response_only(200)
            self.send_header("Date", formatdate(__import__("time").time() + 7200, usegmt=True))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_a_clock_two_hours_behind_the_control_plane(
    tmp_path: Path, skewed_server: str, node: tuple[Path, Path]
) -> None:
    clock = ServerClock()
    with clock.attach(httpx.Client()) as client:
        assert client.get(skewed_server).status_code == 200
    offset, server = clock.reading() or (None, "")
    assert offset is not None and -7205 < offset < -7195 and server == "127.0.0.1"
    watch, errors = watch_for(tmp_path, node[0], clock=clock)
    problems = asyncio.run(watch.tick())
    assert list(problems) == ["clock_off"]
    assert "2.0 hours behind the control plane's (127.0.0.1)" in problems["clock_off"].message
    assert watch.snapshot()["clock"]["server"] == "127.0.0.1"
    assert [r["reason"] for r in errors.records] == ["clock-off"]


def test_the_update_checks_client_carries_the_clock_hook(tmp_path: Path) -> None:
    settings = fast_settings(
        tmp_path,
        program("pulse_node.py"),
        update={"server": "http://127.0.0.1:9/", "process": "storagenode"},
    )
    keeper = Keeper.build(
        KeeperConfig.model_validate(settings),
        current_platform(),
        sink=ListSink(),
        errors=ListErrors(),
    )
    assert keeper.updating is not None and keeper.watch is not None
    with keeper.updating.cycle.client_factory() as client:
        assert len(client.event_hooks["response"]) == 1
    assert keeper.alerts is None  # no [alerts] channel: no hub, no wrapped sink
    assert keeper.snapshot()["alerts"] == {"enabled": False}


def test_the_hub_sends_from_any_thread_resolves_and_sends_again(tmp_path: Path) -> None:
    with http_receiver() as receiver:
        dispatcher = AlertDispatcher(
            [WebhookChannel(receiver.url)], DebouncePolicy(3600), state_path=tmp_path / "a.json"
        )
        hub = AlertHub(dispatcher, node_id=lambda: "1Node")
        index = ListErrors()
        sink = hub.sink(index)
        status: dict[str, Any] = {"state": "crash-loop", "crash_loop": True}

        async def scenario() -> None:
            task = hub.start(lambda: status)
            # From a worker thread, as the update machine's install steps record.
            await asyncio.to_thread(
                sink.record, "keeper", logging.ERROR, "node is in a crash loop", reason="crash-loop"
            )
            sink.record("keeper", logging.ERROR, "node exited with code 1", reason="crash")
            sink.record("keeper", logging.ERROR, "crash loop again", reason="crash-loop")
            await hub.close()
            assert (hub.sent, hub.suppressed) == (1, 1)
            status.update(state="running", crash_loop=False)
            assert hub.review_now(status).resolve_kinds == {"crash_loop"}
            await hub.close()
            sink.record("keeper", logging.ERROR, "crash loop once more", reason="crash-loop")
            await hub.close()
            assert hub.sent == 2
            task.cancel()

        asyncio.run(scenario())
    # Every record reached the index, alert or not.
    reasons = [r["reason"] for r in index.records]
    assert reasons == ["crash-loop", "crash", "crash-loop", "crash-loop"]
    bodies = [json.loads(r.body) for r in receiver.requests]
    assert [(b["kind"], b["message"], b["node_id"]) for b in bodies] == [
        ("crash_loop", "node is in a crash loop", "1Node"),
        ("crash_loop", "crash loop once more", "1Node"),
    ]


def test_a_keeper_without_update_reads_no_key_and_loads_no_cryptography(
    tmp_path: Path, node: tuple[Path, Path]
) -> None:
    """The bare supervisor's idle memory (bench/supervisor_bench.py) stays without
    ``cryptography``: its watch checks that the key is there, not whose it is."""
    settings = fast_settings(tmp_path, program("pulse_node.py"), node={"config_dir": str(node[0])})
    config_file = tmp_path / "keeper.json"
    config_file.write_text(json.dumps(settings))
    script = f"""
import asyncio, json, sys
from pathlib import Path
from nodekeeper.keeper.config import KeeperConfig
from nodekeeper.keeper.wiring import Keeper
from nodekeeper.platform import current_platform
from tests.keeper.conftest import ListErrors, ListSink

config = KeeperConfig.model_validate(json.loads(Path({str(config_file)!r}).read_text()))
keeper = Keeper.build(config, current_platform(), sink=ListSink(), errors=ListErrors())
problems = asyncio.run(keeper.watch.tick())
loaded = sorted(m for m in sys.modules if m.startswith("cryptography"))
print(json.dumps([sorted(problems), keeper.watch.snapshot()["storage_dir"], loaded]))
"""
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [[], str(node[1]), []]
