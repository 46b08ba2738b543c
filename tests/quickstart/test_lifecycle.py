"""However quickstart ends, no keeper or node of it stays behind; the next run ends
what an earlier one left (real processes, real signals, psutil to look)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap

import psutil
import pytest

from nodekeeper.quickstart.instance import InstanceLock
from nodekeeper.quickstart.leftovers import (
    RECORD_FILE,
    RunRecord,
    Started,
    end_leftovers,
    is_same_process,
    names_our_paths,
)
from tests.quickstart.helpers import (
    INSTALL_SECONDS,
    INSTALLED,
    keeper_status,
    read_until,
    running,
    start_quickstart,
    tree,
    wait_all_gone,
    wait_for,
)
from tests.support import free_port

# Wraps the real quickstart: once the file "crash-now" exists, its next tick raises, the
# way a bug in quickstart's own code would.
CRASHING = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from nodekeeper.cli import main
    from nodekeeper.quickstart import run

    trigger = Path(sys.argv.pop(1))
    real_tick = run.Demo.tick

    def tick(self, keeper, rollouts):
        if trigger.exists():
            raise RuntimeError("injected crash in quickstart")
        real_tick(self, keeper, rollouts)

    run.Demo.tick = tick
    sys.exit(main(sys.argv[1:]))
    """
)


def up_and_running(proc, data_dir, lines):
    """Wait for the node to run under the keeper; returns every process quickstart
    started (keeper, node, anything below them) with creation times."""
    read_until(proc, INSTALLED, lines, INSTALL_SECONDS)
    node_pid = keeper_status(data_dir)["pid"]
    started = tree(proc.pid)
    assert node_pid in started, (node_pid, started)
    assert len(started) >= 2  # the keeper and the node at least
    return started


@pytest.mark.e2e
@pytest.mark.parametrize(
    "ending", ["SIGHUP", "SIGTERM", "SIGINT", "SIGKILL", "SIGSEGV", "exception"]
)
def test_no_keeper_or_node_outlives_quickstart(tmp_path, ending):
    data_dir = tmp_path / "qs"
    trigger = tmp_path / "crash-now"
    prefix = None
    if ending == "exception":
        script = tmp_path / "crashing_quickstart.py"
        script.write_text(CRASHING)
        prefix = [sys.executable, str(script), str(trigger)]
    port = free_port()
    proc = start_quickstart(data_dir, port, prefix=prefix)
    lines: list[str] = []
    try:
        started = up_and_running(proc, data_dir, lines)
        if ending == "exception":
            trigger.touch()
        else:
            proc.send_signal(getattr(signal, ending))
        code = proc.wait(180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    rest = proc.stdout.read()
    err = proc.stderr.read()
    if ending in ("SIGHUP", "SIGTERM", "SIGINT"):
        assert code == 0, err
        assert "stopped cleanly" in rest
    elif ending == "exception":
        assert code == 1 and "injected crash in quickstart" in err, err
    else:
        assert code == -getattr(signal, ending)
    wait_all_gone(started)
    # The control plane (a thread of quickstart) is gone too: its port is free again.
    wait_for(lambda: port_is_free(port), 60, f"control plane port {port} free")


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.mark.e2e
@pytest.mark.parametrize("recorded", [True, False], ids=["recorded", "found-by-scan"])
def test_second_run_ends_what_a_killed_first_run_left(tmp_path, recorded):
    """The first run's keeper hangs (SIGSTOP) and quickstart is killed with -9: its
    parent-death SIGTERM waits in the stopped keeper, which keeps running with its node.
    The second run ends both before it starts its own, then works normally. Without the
    record (a run of a version before it) the keeper is found by its command line."""
    data_dir = tmp_path / "qs"
    first = start_quickstart(data_dir)
    try:
        started = up_and_running(first, data_dir, [])
        keeper = next(p for p in psutil.Process(first.pid).children() if "run" in p.cmdline())
        keeper.suspend()
        wait_for(lambda: keeper.status() == psutil.STATUS_STOPPED, 60, "keeper stopped")
        first.kill()
        first.wait(60)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    left = {pid: t for pid, t in started.items() if running(pid, t)}
    assert keeper.pid in left and len(left) >= 2, left  # the keeper and its node
    assert (data_dir / RECORD_FILE).exists()
    if not recorded:
        (data_dir / RECORD_FILE).unlink()

    second = start_quickstart(data_dir)
    lines: list[str] = []
    try:
        line = read_until(second, "ended what an earlier run left running", lines, 180)
        assert f"keeper pid {keeper.pid}" in line
        wait_all_gone(left)
        again = up_and_running(second, data_dir, lines)
        second.send_signal(signal.SIGINT)
        assert second.wait(180) == 0
    finally:
        if second.poll() is None:
            second.kill()
            second.wait()
    wait_all_gone(again)
    assert not (data_dir / RECORD_FILE).exists()


@pytest.mark.e2e
def test_a_second_quickstart_on_the_same_data_dir_is_refused_naming_the_first(tmp_path):
    with InstanceLock(tmp_path):
        proc = start_quickstart(tmp_path)
        _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert f"another quickstart (pid {os.getpid()}) is running on {tmp_path}" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    # Refused before anything was started or written.
    assert not (tmp_path / "ports.json").exists()
    assert not (tmp_path / "keeper.toml").exists()


def test_same_process_is_decided_by_creation_time():
    assert is_same_process(1000.00, 1000.01)
    assert not is_same_process(1000.00, 1003.5)  # the pid was reused
    assert not is_same_process(1000.00, None)  # no such process


def test_only_command_lines_naming_this_data_dirs_paths_are_ours(tmp_path):
    config, node_dir = tmp_path / "keeper.toml", tmp_path / "keeper" / "storagenode"
    keeper = ["/usr/bin/python3", "-m", "nodekeeper", "run", "--config", str(config)]
    node = ["/x/python", "-m", "storagenode", "run", "--config-dir", str(node_dir)]
    assert names_our_paths(keeper, config, node_dir) == "keeper"
    assert names_our_paths(node, config, node_dir) == "node"
    other = tmp_path.parent / "other"
    assert names_our_paths(keeper, other / "keeper.toml", other / "sn") == ""
    assert names_our_paths(["vim", str(config)], config, node_dir) == ""


def test_a_reused_pid_is_never_signalled(tmp_path):
    """A record whose pid now belongs to another process (other creation time) is left
    alone; one that matches is ended."""
    innocent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    ours = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        created = psutil.Process(innocent.pid).create_time()
        ours_created = psutil.Process(ours.pid).create_time()
        rows = [
            {"role": "node", "pid": innocent.pid, "created": created - 5.0},
            {"role": "node", "pid": ours.pid, "created": ours_created},
        ]
        (tmp_path / RECORD_FILE).write_text(json.dumps(rows))
        ended = end_leftovers(
            RunRecord(tmp_path), tmp_path / "keeper.toml", tmp_path / "sn", node_grace=30
        )
        assert [s.pid for s in ended] == [ours.pid]
        # (psutil reaped it: Popen no longer sees its status)
        wait_for(lambda: not running(ours.pid, ours_created), 60, "ours ended")
        assert running(innocent.pid, created)
        assert not (tmp_path / RECORD_FILE).exists()
    finally:
        for proc in (innocent, ours):
            proc.kill()
            proc.wait()


def test_record_keeps_only_what_still_runs(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait(60)
    record = RunRecord(tmp_path)
    try:
        record.add(Started.of("node", proc.pid))
        record.add(Started.of("keeper", done.pid))  # already ended: nothing to record
        record.forget_ended()
        assert [s.pid for s in RunRecord(tmp_path).load()] == [proc.pid]
    finally:
        proc.kill()
        proc.wait()
    record.forget_ended()
    assert not (tmp_path / RECORD_FILE).exists()


@pytest.mark.e2e
def test_a_keeper_that_cannot_start_is_reported_with_its_own_reason(tmp_path):
    """Another keeper holds quickstart's keeper data dir (the situation an orphan made):
    quickstart ends in one line with the keeper's own reason, exit 1, nothing left."""
    from nodekeeper.keeper.instance_lock import acquire

    data_dir = tmp_path / "qs"
    with acquire(data_dir / "keeper", wait=0):
        proc = start_quickstart(data_dir)
        try:
            _out, err = proc.communicate(timeout=INSTALL_SECONDS)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 1, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("nodekeeper: error: the keeper exited (1): "), err
    assert f"another keeper (pid {os.getpid()})" in last, err
    assert "Traceback" not in err
