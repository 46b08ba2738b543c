"""Running quickstart as a real process and watching what it started."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import psutil

from tests.support import free_port

INSTALLED = "the keeper installed and runs"
# The machine is shared and slow; these allow for 5-10x the normal time.
INSTALL_SECONDS = 240.0
GONE_SECONDS = 120.0


def start_quickstart(
    data_dir: Path, port: int | None = None, prefix: Sequence[str] | None = None
) -> subprocess.Popen[str]:
    argv = list(prefix or [sys.executable, "-m", "nodekeeper"])
    port = port or free_port()
    return subprocess.Popen(
        [*argv, "quickstart", "--plain", "--data-dir", str(data_dir),
         "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def read_until(proc: subprocess.Popen[str], marker: str, lines: list[str], timeout: float) -> str:
    """Read quickstart's lines until one holds ``marker`` (it prints one a tick at least
    while something happens; a missing marker ends with everything it printed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line:
            err = proc.stderr.read() if proc.stderr else ""
            raise AssertionError("quickstart exited early:\n" + "".join(lines) + err)
        lines.append(line)
        if marker in line:
            return line
    raise AssertionError(f"no {marker!r} within {timeout} s:\n" + "".join(lines))


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.1)


def keeper_status(data_dir: Path) -> dict:
    import httpx

    port = json.loads((data_dir / "ports.json").read_text())["keeper_status"]
    return httpx.get(f"http://127.0.0.1:{port}/status", timeout=10).json()


def tree(pid: int) -> dict[int, float]:
    """Every process below ``pid``, with its creation time (to tell a reused pid)."""
    found = {}
    for child in psutil.Process(pid).children(recursive=True):
        try:
            found[child.pid] = child.create_time()
        except psutil.NoSuchProcess:
            continue
    return found


def running(pid: int, created: float) -> bool:
    """The process still runs as itself (a zombie has ended; a reused pid is another)."""
    try:
        proc = psutil.Process(pid)
        return proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def still_running(processes: dict[int, float]) -> dict[int, str]:
    out = {}
    for pid, created in processes.items():
        if running(pid, created):
            try:
                out[pid] = " ".join(psutil.Process(pid).cmdline())
            except psutil.NoSuchProcess:
                continue
    return out


def wait_all_gone(processes: dict[int, float], timeout: float = GONE_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while still_running(processes):
        if time.monotonic() > deadline:
            raise AssertionError(f"left running: {still_running(processes)}")
        time.sleep(0.2)
