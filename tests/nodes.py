"""Running real storage node processes in tests (shared with the keeper's tests).

free_port() -> int  (from tests.support)
setup_node(root, allocated="100 MB", argv=DEV_NODE) -> NodeSetup
NodeProcess(setup, argv=DEV_NODE)  # context manager; .start(), .wait_ready(), ...
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support import free_port

__all__ = ["DEV_NODE", "NodeProcess", "NodeSetup", "free_port", "setup_node"]

# The node from this source tree; an installed artifact's argv comes from
# tests.artifacts.node_argv(install_dir) without the trailing command.
DEV_NODE: list[str] = [sys.executable, "-m", "storagenode"]


@dataclass(frozen=True)
class NodeSetup:
    config_dir: Path
    storage_dir: Path
    port: int
    control_port: int

    @property
    def token(self) -> str:
        return (self.config_dir / "shutdown.token").read_text().strip()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def control_url(self) -> str:
        return f"http://127.0.0.1:{self.control_port}"


def setup_node(root: Path, allocated: str = "100 MB", argv: list[str] | None = None) -> NodeSetup:
    """Run `storagenode setup` into root/config and root/storage on free loopback ports."""
    setup = NodeSetup(root / "config", root / "storage", free_port(), free_port())
    result = subprocess.run(
        [
            *(argv or DEV_NODE),
            "setup",
            "--config-dir",
            str(setup.config_dir),
            "--storage-dir",
            str(setup.storage_dir),
            "--allocated",
            allocated,
            "--listen",
            f"127.0.0.1:{setup.port}",
            "--control-listen",
            f"127.0.0.1:{setup.control_port}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return setup


class NodeProcess:
    """One `storagenode run` process; stderr goes to a file so it never blocks."""

    def __init__(self, setup: NodeSetup, argv: list[str] | None = None) -> None:
        self.setup = setup
        self.argv = [*(argv or DEV_NODE), "run", "--config-dir", str(setup.config_dir)]
        self.log_path = setup.config_dir.parent / f"node-{time.monotonic_ns()}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> NodeProcess:
        return self if self.proc is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def start(self) -> NodeProcess:
        assert self.proc is None, "a NodeProcess runs one process; make another for a restart"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=log)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def pulse(self, timeout: float = 2.0) -> dict[str, Any]:
        response = httpx.get(f"{self.setup.control_url}/pulse", timeout=timeout)
        response.raise_for_status()
        return response.json()

    def wait_ready(self, timeout: float = 15.0) -> dict[str, Any]:
        """The first pulse; fails at once if the process exits instead."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"node exited with {self.proc.returncode}: {self.log()}")
            try:
                return self.pulse(timeout=1.0)
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"no pulse within {timeout} s: {self.log()}") from None
                time.sleep(0.02)

    def wait(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def shutdown(self) -> httpx.Response:
        return httpx.post(
            f"{self.setup.control_url}/shutdown",
            headers={"Authorization": f"Bearer {self.setup.token}"},
            timeout=5,
        )

    def terminate(self) -> None:
        os.kill(self.pid, signal.SIGTERM)

    def kill9(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        self.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_lines(self) -> list[dict[str, Any]]:
        """The JSON lines of stderr (non-JSON lines, e.g. tracebacks, are skipped)."""
        lines = []
        for line in self.log().splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
        return lines


def run_once(argv: list[str], *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run a node command to completion (version, setup, a run that should fail fast)."""
    return subprocess.run([*argv, *args], capture_output=True, text=True, timeout=timeout)
