"""`nodekeeper update check` and `nodekeeper status` against a real keeper process, a
real control plane and the real CLI (issue 9): a changed announcement is checked at once
and installed without restarting the keeper; a control plane that is down shows as
"unreachable since" in the human status; no keeper, or one without [update], gets one
clear line."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodekeeper.keeper.api import serve_status
from nodekeeper.updater.identity import read_node_id
from nodekeeper.version.decision import node_position
from tests.support import free_port
from tests.updater.lab import PROCESS, Lab

pytestmark = pytest.mark.timeout(240)

CLI = [sys.executable, "-m", "nodekeeper"]


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lab]:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    lab = Lab(tmp_path)
    try:
        yield lab
    finally:
        lab.close()


def cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "80"}
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


def seed_far_from(node_id: bytes) -> tuple[str, float]:
    """A rollout seed that puts this node past the middle (deterministic search)."""
    for n in range(1000):
        seed = bytes([n % 256, n // 256]) * 16
        position = node_position(node_id, seed)
        if position > 50:
            return seed.hex(), position
    raise AssertionError("no seed found")


@pytest.mark.e2e
def test_update_check_decides_now_and_the_node_updates_without_a_restart(lab: Lab) -> None:
    lab.publish("1.0.0")
    keeper = lab.start_keeper(update={"interval_seconds": 3600.0, "jitter": 0.0})
    lab.wait_running("1.0.0", timeout=60)
    url = f"http://127.0.0.1:{lab.status_port}"
    lab.wait(lambda: (lab.status() or {}).get("update", {}).get("next_check_in"), 30)

    # A ramping rollout that has not reached this node: the decision says when it will.
    lab.publish("1.1.0")
    seed, position = seed_far_from(read_node_id(lab.node.config_dir))
    lab.admin.request(
        "POST",
        f"/v1/admin/processes/{PROCESS}/rollout",
        json={"version": "1.1.0", "rate_per_day": 10.0, "seed": seed},
    )
    waiting = cli("update", "check", "--url", url)
    assert waiting.returncode == 0, waiting.stderr
    out = " ".join(waiting.stdout.split())
    assert "no update: the rollout of 1.1.0 has not reached this node yet" in out
    assert f"this node's position {position:.1f} %" in out
    assert "expected in about" in out and "days at the current rate" in out

    status = cli("status", "--url", url)
    assert status.returncode == 0, status.stderr
    text = " ".join(status.stdout.split())
    assert "the rollout of 1.1.0 has not reached this node yet" in text
    assert "next check in" in text
    assert all(len(line) <= 80 for line in status.stdout.splitlines()), status.stdout

    # The rollout jumps to 100 %: `update check` decides at once and the node updates.
    lab.admin.request(
        "PUT", f"/v1/admin/processes/{PROCESS}/rollout/percent", json={"percent": 100}
    )
    now = cli("update", "check", "--url", url)
    assert now.returncode == 0, now.stderr
    assert "updating to 1.1.0: this node is in the rollout of 1.1.0" in now.stdout
    lab.wait_running("1.1.0", timeout=90)
    assert keeper.alive() and lab.keepers == [keeper]
    # Each check was one cycle: the one at start plus the two asked for.
    assert lab.status()["update"]["checks"] == 3


@pytest.mark.e2e
def test_control_plane_down_shows_unreachable_since(lab: Lab) -> None:
    lab.publish("1.0.0")
    lab.start_keeper(update={"interval_seconds": 3600.0, "jitter": 0.0})
    lab.wait_running("1.0.0", timeout=60)
    lab.wait(lambda: (lab.status() or {}).get("update", {}).get("next_check_in"), 30)
    lab.cp.stop()
    url = f"http://127.0.0.1:{lab.status_port}"
    failed = cli("update", "check", "--url", url)
    assert failed.returncode == 1
    assert "the check failed:" in failed.stdout
    status = cli("status", "--url", url)
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert lines[0] == "PROBLEMS"
    text = " ".join(status.stdout.split())
    assert f"control plane {lab.cp.url} unreachable since" in text
    assert all(len(line) <= 80 for line in lines), status.stdout
    data = lab.status()
    assert data["update"]["unreachable_since"] is not None
    assert data["tree_tracking"] in ("cgroup", "process-group")
    assert data["healthy_since"] is not None and data["logs"]["bytes"] > 0


def test_no_keeper_and_keeper_without_updates_say_so_in_one_line() -> None:
    nobody = cli("update", "check", "--url", f"http://127.0.0.1:{free_port()}", timeout=60)
    assert nobody.returncode == 1
    assert nobody.stderr.count("\n") == 1 and "no keeper answering at" in nobody.stderr

    async def scenario() -> subprocess.CompletedProcess[str]:
        port = free_port()
        server = await serve_status("127.0.0.1", port, lambda: {"state": "running"})
        try:
            return await asyncio.to_thread(
                cli, "update", "check", "--url", f"http://127.0.0.1:{port}", timeout=60
            )
        finally:
            server.close()
            await server.wait_closed()

    unmanaged = asyncio.run(scenario())
    assert unmanaged.returncode == 2
    assert unmanaged.stderr.count("\n") == 1
    assert "this keeper has no [update] table" in unmanaged.stderr
