"""The whole stack as on a Windows PC: `nodekeeper run` in the Windows runtime under Wine,
supervising the reference storage node through the Windows platform (Job Object, private
bytes, limits report). The status API is read from Linux over loopback, which Wine shares.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from nodekeeper.platform import base
from tests.keeper.conftest import fast_settings, free_port
from tests.windows.wine import WineRuntime, windows_path

pytestmark = [pytest.mark.wine, pytest.mark.timeout(240)]


class WineKeeper:
    """`python.exe -m nodekeeper run` under Wine; output drained from a pipe (a Windows
    python.exe must not write to a regular file)."""

    def __init__(self, wine: WineRuntime, config: Path) -> None:
        self.proc = subprocess.Popen(
            ["wine", wine.python, "-m", "nodekeeper", "run", "--config", windows_path(config)],
            env=wine.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.output: list[bytes] = []
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    def kill(self) -> None:
        """SIGKILL to the keeper: /usr/bin/wine execs, so this pid IS the Windows process.
        The wineserver sees it die and closes its handles, as Windows would."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def status(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=2) as reply:
            data: dict[str, Any] = json.loads(reply.read())
            return data
    except OSError:
        return None


def wait_status(
    port: int, check: Callable[[dict[str, Any]], bool], keeper: WineKeeper, timeout: float = 90
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    data = None
    while time.monotonic() < deadline:
        data = status(port)
        if data is not None and check(data):
            return data
        assert keeper.proc.poll() is None, b"".join(keeper.output).decode(errors="replace")
        time.sleep(0.2)
    raise AssertionError(f"status never matched; last: {data}")


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_keeper_supervises_the_node_restarts_it_and_takes_it_along(
    tmp_path: Path, wine: WineRuntime
) -> None:
    control, status_port = free_port(), free_port()
    config_dir = tmp_path / "node"
    setup = wine.run(
        "-m", "storagenode", "setup",
        "--config-dir", windows_path(config_dir),
        "--storage-dir", windows_path(tmp_path / "pieces"),
        "--allocated", "1 GB",
        "--listen", f"127.0.0.1:{free_port()}",
        "--control-listen", f"127.0.0.1:{control}",
    )  # fmt: skip
    assert setup.returncode == 0, setup.output
    settings = fast_settings(
        tmp_path,
        [wine.python, "-m", "storagenode", "run", "--config-dir", "{config_dir}"],
        node={"config_dir": windows_path(config_dir)},
        probe={
            "kind": "http",
            "url": f"http://127.0.0.1:{control}/pulse",
            "start_grace_seconds": 60.0,
        },
        stop={"timeout_seconds": 10.0, "shutdown_url": f"http://127.0.0.1:{control}/shutdown"},
        limits={
            "memory_hard": "1 GiB",
            "cpu_cores": [0],
            "cpu_rate_percent": 50.0,
            "below_normal_priority": True,
        },
        status={"listen": f"127.0.0.1:{status_port}"},
    )
    settings["data_dir"] = windows_path(tmp_path / "data")
    config = tmp_path / "keeper.toml"
    config.write_bytes(tomli_w.dumps(settings).encode())

    keeper = WineKeeper(wine, config)
    try:
        data = wait_status(
            status_port, lambda d: d["state"] == "running" and d["memory"]["bytes"], keeper
        )
        assert data["platform"] == "windows"
        assert data["memory"]["kind"] == "private" and data["memory"]["bytes"] > 10 << 20
        assert data["memory"]["hard_mechanism"] == base.MECH_JOB_MEMORY
        assert data["cpu"]["affinity_mechanism"] == base.MECH_JOB_AFFINITY
        assert data["cpu"]["priority"] == base.MECH_PRIORITY_CLASS
        # Wine refuses job CPU rate control: the status must not claim a cap.
        assert data["cpu"]["rate_mechanism"] == base.MECH_NONE
        assert any("CPU rate cap not in force" in note for note in data["limit_notes"])

        first = data["pid"]
        killed = wine.run_code(f"import os; os.kill({first}, 9)")  # TerminateProcess
        assert killed.returncode == 0, killed.output
        data = wait_status(
            status_port, lambda d: d["state"] == "running" and d["pid"] != first, keeper
        )
        assert data["restarts"] == 1 and data["last_exit"]["reason"] == "crash"
        second = data["pid"]

        keeper.kill()
        # Kill-on-close: the node's pulse endpoint goes away with it.
        deadline = time.monotonic() + 10
        while port_open(control):
            assert time.monotonic() < deadline, "the node outlived the keeper"
            time.sleep(0.1)
        check = wine.run_code(
            f"import psutil, sys; sys.exit(1 if psutil.pid_exists({second}) else 0)"
        )
        assert check.returncode == 0, f"node {second} still alive: {check.output}"
    finally:
        keeper.kill()
