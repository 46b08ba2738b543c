"""Helpers for the keeper tests: fast timing constants, free ports, a supervisor runner.

The constants are small but the mechanisms are the real ones: real child processes,
real signals, real HTTP on loopback.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from nodekeeper.keeper.config import KeeperConfig
from nodekeeper.keeper.supervisor import Supervisor
from nodekeeper.platform import current_platform
from tests.support import deep_merge, free_port

PROGRAMS = Path(__file__).parent / "programs"
PY = sys.executable


def program(name: str, *args: object) -> list[str]:
    return [PY, str(PROGRAMS / name), *map(str, args)]


def fast_settings(tmp_path: Path, command: list[str], **sections: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "data_dir": str(tmp_path / "data"),
        "node": {"command": command, "setup_recheck_seconds": 0.5},
        "probe": {
            "kind": "process",
            "interval_seconds": 0.2,
            "timeout_seconds": 0.3,
            "failure_threshold": 3,
            "start_grace_seconds": 5.0,
        },
        "restart": {
            "backoff_initial_seconds": 0.2,
            "backoff_max_seconds": 1.6,
            "backoff_reset_after_seconds": 1.5,
            "crash_loop_crashes": 3,
            "crash_loop_window_seconds": 30.0,
        },
        "stop": {"timeout_seconds": 1.0, "shutdown_url": ""},
        "limits": {"sample_interval_seconds": 0.2},
        "status": {"listen": f"127.0.0.1:{free_port()}"},
    }
    return deep_merge(base, sections)


def fast_config(tmp_path: Path, command: list[str], **sections: Any) -> KeeperConfig:
    return KeeperConfig.model_validate(fast_settings(tmp_path, command, **sections))


class ListSink:
    """Collects node output lines (a real sink, just in memory)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def write(self, line: str, stream: str) -> None:
        self.lines.append((stream, line))

    def close(self) -> None:
        pass


class ListErrors:
    """Collects error-index records (the ErrorIndex interface, in memory)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def record(self, source: str, level: int, message: str, **fields: Any) -> None:
        self.records.append({"source": source, "level": level, "message": message, **fields})

    def reasons(self) -> list[str]:
        return [r["reason"] for r in self.records]


async def wait_until(check: Callable[[], bool], timeout: float, what: str = "") -> float:
    """Poll ``check`` every 10 ms; returns the time it took; fails the test on timeout."""
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or check}")
        await asyncio.sleep(0.01)
    return time.monotonic() - began


class Running:
    """A supervisor running in the current event loop."""

    def __init__(self, config: KeeperConfig) -> None:
        self.sink = ListSink()
        self.errors = ListErrors()
        self.sup = Supervisor(config, current_platform(), sink=self.sink, errors=self.errors)
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Running:
        self.task = asyncio.create_task(self.sup.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.sup.request_shutdown()
        assert self.task is not None
        await asyncio.wait_for(self.task, 10)

    @property
    def state(self) -> str:
        return self.sup.status.state.value

    @property
    def pid(self) -> int | None:
        return self.sup.status.pid

    async def wait_state(self, state: str, timeout: float = 5.0) -> float:
        return await wait_until(lambda: self.state == state, timeout, f"state {state}")

    async def wait_new_pid(self, old: int | None, timeout: float = 5.0) -> int:
        await wait_until(
            lambda: self.pid is not None and self.pid != old, timeout, "a new node pid"
        )
        assert self.pid is not None
        return self.pid


def gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (a zombie waiting for a reaper counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture(autouse=True)
def _quiet_keeper_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="nodekeeper.keeper")
