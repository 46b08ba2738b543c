"""SIGTERM to a real `nodekeeper run` while its check (or download) is being trickled.

The keeper's network calls block in worker threads; before, the process logged "keeper
stopped" and then stayed alive until the server finished its answer (minutes). Now each
request's socket is shut down when the keeper stops, so the process exits within its
stop timeout whatever the server does.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomli_w

from nodekeeper.version.platforms import this_platform
from tests.keeper.conftest import fast_settings, program
from tests.updater.httpserver import FileServer
from tests.updater.trickle import trickling

pytestmark = pytest.mark.timeout(180)

STOP_TIMEOUT = 5.0
# Process start-up and interpreter exit on a machine 5-10x slower than normal; still far
# below the minutes the trickled answers take (4 KiB at a byte per 50 ms: 205 s).
EXIT_ALLOWANCE = 20.0


def start_keeper(tmp_path: Path, server: str, read_timeout: float = 30.0) -> subprocess.Popen[str]:
    settings = fast_settings(
        tmp_path,
        program("hanger.py"),
        stop={"timeout_seconds": STOP_TIMEOUT},
        update={
            "server": server,
            "first_check": "now",
            "connect_timeout_seconds": 5.0,
            "read_timeout_seconds": read_timeout,
            "request_deadline_seconds": 600.0,
        },
    )
    config = tmp_path / "keeper.toml"
    config.write_bytes(tomli_w.dumps(settings).encode())
    return subprocess.Popen(
        [sys.executable, "-m", "nodekeeper", "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop_and_time(keeper: subprocess.Popen[str]) -> tuple[float, int, str]:
    began = time.monotonic()
    keeper.send_signal(signal.SIGTERM)
    try:
        code = keeper.wait(STOP_TIMEOUT + EXIT_ALLOWANCE)
    except subprocess.TimeoutExpired:
        keeper.kill()
        keeper.wait(10)
        raise AssertionError(
            f"the keeper did not exit within {STOP_TIMEOUT + EXIT_ALLOWANCE} s of SIGTERM"
        ) from None
    took = time.monotonic() - began
    assert keeper.stderr is not None
    return took, code, keeper.stderr.read()


def test_sigterm_during_a_trickled_check_exits_in_time(tmp_path: Path) -> None:
    with trickling(interval=0.05) as server:
        keeper = start_keeper(tmp_path, server.url)
        try:
            server.wait_in_flight(timeout=60)
            took, code, stderr = stop_and_time(keeper)
        finally:
            if keeper.poll() is None:
                keeper.kill()
                keeper.wait(10)
        assert server.bytes_sent < 4096  # the answer was still trickling
    assert code == 0, stderr
    assert "keeper stopped" in stderr
    assert took < STOP_TIMEOUT + EXIT_ALLOWANCE


def announcement_with_artifact(url: str) -> bytes:
    artifact = {"url": url, "sha256": "0" * 64, "size": 4096}
    ref = {
        "version": "1.0.0",
        "url": "https://cp.example/unused",
        "artifacts": {this_platform(): artifact},
    }
    doc = {"processes": {"storagenode": {"minimum": ref, "suggested": ref, "rollout": {
        "seed": "", "cursor": "00" * 32}}}}  # fmt: skip
    return json.dumps(doc).encode()


def test_sigterm_during_a_stalled_download_exits_in_time(tmp_path: Path) -> None:
    """Nothing installed: the keeper downloads the minimum at once, from a server that
    sends its headers and then nothing (the read timeout is a minute; the cancel flag the
    download checks between chunks never gets a chunk)."""
    with trickling(body=b"z" * 4096, silent_body=True) as artifacts, FileServer() as cp:
        cp.add("/", announcement_with_artifact(artifacts.url + "/storagenode.zip"))
        keeper = start_keeper(tmp_path, cp.url, read_timeout=60.0)
        try:
            artifacts.wait_in_flight(timeout=60)
            took, code, stderr = stop_and_time(keeper)
        finally:
            if keeper.poll() is None:
                keeper.kill()
                keeper.wait(10)
    assert code == 0, stderr
    assert "keeper stopped" in stderr
    assert took < STOP_TIMEOUT + EXIT_ALLOWANCE
