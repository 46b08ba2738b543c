"""`nodekeeper quickstart`: the whole local system comes up, rolls out, and stops cleanly."""

import os
import signal
import subprocess
import sys
import time

import httpx
import psutil

from nodekeeper.version.schema import parse_announcement
from tests.support import free_port


def read_until(proc, marker, lines, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        assert line, "quickstart exited early:\n" + "".join(lines)
        lines.append(line)
        if marker in line:
            return line
    raise AssertionError(f"no {marker!r} within {timeout} s:\n" + "".join(lines))


def test_quickstart_installs_rolls_out_stops_cleanly_and_resumes(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "nodekeeper", "quickstart", "--plain",
         "--data-dir", str(tmp_path), "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    lines: list[str] = []
    try:
        read_until(proc, "the keeper installed and runs 1.0.0", lines, 120)
        read_until(proc, "rollout of 1.0.1 started", lines, 30)
        read_until(proc, "done: the node runs 1.0.1", lines, 120)
        url = f"http://127.0.0.1:{port}"
        doc = parse_announcement(httpx.get(url + "/").content).processes["storagenode"]
        assert doc.suggested.version == "1.0.1"
        text = "".join(lines)
        assert "update committed" in text or "update succeeded" in text, text
        # The update stopped the node through the node's own control address (the one
        # quickstart set up), not a POST to the default 127.0.0.1:7778 and then SIGTERM.
        keeper_log = (tmp_path / "keeper" / "logs" / "keeper.log").read_text()
        assert "(switching to another version) via the shutdown endpoint" in keeper_log
        assert "shutdown endpoint failed" not in keeper_log
        assert "127.0.0.1:7778" not in keeper_log
        status_port = int((tmp_path / "ports.json").read_text().split('"keeper_status": ')[1][:-1])
        node_pid = httpx.get(f"http://127.0.0.1:{status_port}/status").json()["pid"]
        assert psutil.pid_exists(node_pid)
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(60)
    assert code == 0
    rest = proc.stdout.read()
    assert "stopped cleanly" in rest
    # nothing left behind: the node (and the keeper) are gone
    deadline = time.monotonic() + 5
    while psutil.pid_exists(node_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not psutil.pid_exists(node_pid) or psutil.Process(node_pid).status() == "zombie"
    with os.scandir(tmp_path) as entries:
        assert {e.name for e in entries} >= {"control-plane", "keeper", "keeper.toml", "releases"}

    # A second quickstart finds its state again and rolls out the next version.
    again = subprocess.Popen(
        proc.args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        read_until(again, "done: the node runs 1.0.2", [], 180)
    finally:
        again.send_signal(signal.SIGINT)
        assert again.wait(60) == 0
