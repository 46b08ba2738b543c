"""`nodekeeper run` / `nodekeeper status` as real processes, with the reference node and
with the stand-in programs: keeper SIGTERM, keeper kill -9, bad configs, the status CLI."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from nodekeeper import cli
from nodekeeper.keeper.commands import status_rows
from nodekeeper.keeper.config import KeeperConfig
from nodekeeper.keeper.supervisor import Supervisor
from nodekeeper.logs import RotatingLogHandler
from nodekeeper.logs.directory import LogDirectory
from nodekeeper.platform import current_platform
from tests.keeper.conftest import fast_settings, free_port, gone, program

pytestmark = pytest.mark.timeout(90)
NODEKEEPER = [sys.executable, "-m", "nodekeeper"]


def write_config(path: Path, settings: dict[str, Any]) -> Path:
    path.write_bytes(tomli_w.dumps(settings).encode())
    return path


def wait_status(port: int, check: Any, timeout: float = 20) -> dict[str, Any]:
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        try:
            data = status_now(port)
        except OSError:
            data = None
        if data is not None and check(data):
            return data
        time.sleep(0.05)
    raise AssertionError(f"status never matched; last: {data}")


def status_now(port: int) -> dict[str, Any] | None:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=2) as r:
            return json.loads(r.read())
    except OSError:
        return None


SERVICE_ENTRY = [sys.executable, "-m", "nodekeeper.keeper"]


class Keeper:
    def __init__(self, config: Path, entry: list[str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [*(entry or [*NODEKEEPER, "run"]), "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def stop(self, timeout: float = 15) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def node_dirs(tmp_path: Path) -> tuple[Path, int]:
    """A reference storage node, set up, with its control (pulse) port."""
    control = free_port()
    config_dir = tmp_path / "node"
    subprocess.run(
        [
            str(Path(sys.executable).parent / "storagenode"),
            "setup",
            "--config-dir", str(config_dir),
            "--storage-dir", str(tmp_path / "pieces"),
            "--allocated", "1 GB",
            "--listen", f"127.0.0.1:{free_port()}",
            "--control-listen", f"127.0.0.1:{control}",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return config_dir, control


def reference_settings(tmp_path: Path, config_dir: Path, control: int) -> dict[str, Any]:
    return fast_settings(
        tmp_path,
        ["storagenode", "run", "--config-dir", "{config_dir}"],
        node={"config_dir": str(config_dir)},
        probe={
            "kind": "http",
            "url": f"http://127.0.0.1:{control}/pulse",
            "start_grace_seconds": 20.0,
        },
        stop={"timeout_seconds": 10.0, "shutdown_url": f"http://127.0.0.1:{control}/shutdown"},
    )


@pytest.mark.e2e
def test_reference_node_runs_restarts_after_kill_9_and_stops_with_the_keeper(
    tmp_path: Path, node_dirs: tuple[Path, int], capsys: pytest.CaptureFixture[str]
) -> None:
    config_dir, control = node_dirs
    settings = reference_settings(tmp_path, config_dir, control)
    status_port = int(settings["status"]["listen"].rsplit(":", 1)[1])
    keeper = Keeper(write_config(tmp_path / "keeper.toml", settings))
    try:
        data = wait_status(status_port, lambda d: d["state"] == "running")
        assert data["version"] and data["last_pulse"]["data"]["node_id"]
        first = data["pid"]
        os.kill(first, signal.SIGKILL)
        data = wait_status(status_port, lambda d: d["state"] == "running" and d["pid"] != first)
        assert data["restarts"] == 1 and data["last_exit"]["reason"] == "crash"

        # The status CLI, table form, in this process.
        assert cli.main(["status", "--url", f"http://127.0.0.1:{status_port}"]) == 0
        table = capsys.readouterr().out
        assert "running" in table and str(data["pid"]) in table and "killed by SIGKILL" in table

        second = data["pid"]
        assert keeper.stop() == 0
    finally:
        keeper.kill()
    assert gone(second)
    logs = tmp_path / "data" / "logs"
    keeper_log = (logs / "keeper.log").read_text()
    # The graceful stop went through the node's shutdown endpoint with its token.
    assert "via the shutdown endpoint" in keeper_log
    assert (logs / "storagenode.log").stat().st_size > 0


def test_reference_node_not_set_up_is_needs_setup(tmp_path: Path) -> None:
    settings = reference_settings(tmp_path, tmp_path / "never-set-up", free_port())
    status_port = int(settings["status"]["listen"].rsplit(":", 1)[1])
    keeper = Keeper(write_config(tmp_path / "keeper.toml", settings))
    try:
        data = wait_status(status_port, lambda d: d["state"] == "needs-setup")
        # Two rechecks (every 0.5 s): waited for, not slept for; on a loaded machine
        # each recheck's node start alone can take longer than a fixed sleep.
        data = wait_status(status_port, lambda d: len(d["exits"]) >= 2, timeout=120)
        # Between rechecks the state is needs-setup; during one (the node is starting to
        # find out it is still not set up) it is starting. Never a crash, never a restart.
        assert data["state"] in ("needs-setup", "starting")
        assert data["restarts"] == 0 and not data["crash_loop"]
        assert len(data["exits"]) >= 2
        assert {e["reason"] for e in data["exits"]} == {"not-set-up"}
        assert keeper.stop() == 0
    finally:
        keeper.kill()
    index = (tmp_path / "data" / "logs").glob("errors*")
    assert any("not set up" in p.read_text() for p in index)


@pytest.mark.e2e
def test_keeper_killed_with_9_takes_the_node_along_and_the_next_keeper_clears_the_rest(
    tmp_path: Path,
) -> None:
    pids = tmp_path / "pids"
    settings = fast_settings(tmp_path, program("stubborn_tree.py", pids))
    status_port = int(settings["status"]["listen"].rsplit(":", 1)[1])
    config = write_config(tmp_path / "keeper.toml", settings)
    keeper = Keeper(config)
    try:
        wait_status(status_port, lambda d: d["state"] == "running")
        deadline = time.monotonic() + 10
        while not (pids.exists() and len(pids.read_text().split()) == 3):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        node, child, grandchild = (int(p) for p in pids.read_text().split())
        keeper.proc.send_signal(signal.SIGKILL)
        keeper.proc.wait(5)
        killed_at = time.monotonic()
        # The node itself dies with the keeper (parent-death signal), within seconds.
        while not gone(node):
            assert time.monotonic() - killed_at < 3, "the node outlived the keeper"
            time.sleep(0.02)
    finally:
        keeper.kill()
    # Its descendants are orphans now; the next keeper removes them before starting anew.
    # (This one through the service entry point, which must behave the same.)
    second = Keeper(config, SERVICE_ENTRY)
    try:
        data = wait_status(status_port, lambda d: d["state"] == "running")
        assert data["pid"] not in (node, child, grandchild)
        for pid in (child, grandchild):
            assert gone(pid), f"leftover {pid} survived the new keeper's start"
        assert second.stop() == 0
    finally:
        second.kill()
    stderr = second.proc.stderr.read() if second.proc.stderr else ""
    assert "left by a previous keeper" in stderr


def test_bad_config_exits_2_naming_file_key_and_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[restart]\nbackoff_initial_seconds = -1\n[probe]\nkind = "ping"\n')
    assert cli.main(["run", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: restart.backoff_initial_seconds: Input should be greater than 0" in err
    assert f"{bad}: probe.kind: Input should be 'http', 'tcp' or 'process'" in err

    broken = tmp_path / "broken.toml"
    broken.write_text("[limits\n")
    assert cli.main(["run", "--config", str(broken)]) == 2
    assert f"{broken}: not valid TOML" in capsys.readouterr().err

    assert cli.main(["run", "--config", str(tmp_path / "missing.toml")]) == 2
    assert "missing.toml: no such file" in capsys.readouterr().err

    cores = tmp_path / "cores.toml"
    cores.write_text(f"data_dir = '{tmp_path}'\n[limits]\ncpu_cores = 4096\n")
    assert cli.main(["run", "--config", str(cores)]) == 2
    assert f"{cores}: limits.cpu_cores: 4096 cores asked for" in capsys.readouterr().err
    # that config got as far as opening the logs: a refused start closes them again
    assert str(tmp_path / "logs") not in LogDirectory._registry
    assert not any(isinstance(h, RotatingLogHandler) for h in logging.getLogger().handlers)


def test_status_without_a_keeper_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    assert cli.main(["status", "--url", f"http://127.0.0.1:{port}"]) == 1
    assert f"no keeper answering at http://127.0.0.1:{port}/status" in capsys.readouterr().err


def test_status_finds_the_keeper_from_its_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    config = tmp_path / "keeper.toml"
    config.write_text(f"[status]\nlisten = '127.0.0.1:{port}'\n")
    assert cli.main(["status", "--json", "--config", str(config)]) == 1
    assert f"http://127.0.0.1:{port}/status" in capsys.readouterr().err


def test_status_table_of_a_keeper_that_has_not_started_anything(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path, ["true"], limits={"memory_hard": "1 GiB"})
    sup = Supervisor(KeeperConfig.model_validate(settings), current_platform())
    rows = dict(status_rows(json.loads(json.dumps(sup.snapshot()))))
    assert rows["state"] == "stopped" and rows["pid"] == "-" and rows["uptime"] == "-"
    assert "hard limit 1.0 GiB via" in rows["memory"] and "soft limit -" in rows["memory"]
    assert rows["cpu"].startswith("-; no cap; all cores; priority nice")


@pytest.mark.e2e
def test_reference_node_stopped_with_sigstop_is_found_hung_and_replaced(
    tmp_path: Path, node_dirs: tuple[Path, int]
) -> None:
    config_dir, control = node_dirs
    settings = reference_settings(tmp_path, config_dir, control)
    settings["stop"]["timeout_seconds"] = 1.0
    status_port = int(settings["status"]["listen"].rsplit(":", 1)[1])
    keeper = Keeper(write_config(tmp_path / "keeper.toml", settings))
    try:
        first = wait_status(status_port, lambda d: d["state"] == "running")["pid"]
        os.kill(first, signal.SIGSTOP)
        data = wait_status(status_port, lambda d: d["state"] == "running" and d["pid"] != first)
        assert data["last_exit"]["reason"] == "hung"
        assert "tree killed" in data["last_exit"]["detail"]  # a stopped process ignores TERM
        assert gone(first)
        assert keeper.stop() == 0
    finally:
        keeper.kill()
