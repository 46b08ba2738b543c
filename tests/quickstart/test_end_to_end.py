"""`nodekeeper quickstart`: the whole local system comes up, rolls out, and stops cleanly."""

import os
import signal

import httpx
import pytest

from nodekeeper.version.schema import parse_announcement
from tests.quickstart.helpers import (
    INSTALL_SECONDS,
    keeper_status,
    read_until,
    start_quickstart,
    tree,
    wait_all_gone,
)
from tests.support import free_port

pytestmark = pytest.mark.e2e


def test_quickstart_installs_rolls_out_stops_cleanly_and_resumes(tmp_path):
    port = free_port()
    proc = start_quickstart(tmp_path, port)
    lines: list[str] = []
    try:
        read_until(proc, "the keeper installed and runs 1.0.0", lines, INSTALL_SECONDS)
        read_until(proc, "rollout of 1.0.1 started", lines, INSTALL_SECONDS)
        read_until(proc, "done: the node runs 1.0.1", lines, INSTALL_SECONDS)
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
        started = tree(proc.pid)
        assert keeper_status(tmp_path)["pid"] in started
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(180)
    assert code == 0
    rest = proc.stdout.read()
    assert "stopped cleanly" in rest
    wait_all_gone(started)  # nothing left behind: the node and the keeper are gone
    with os.scandir(tmp_path) as entries:
        assert {e.name for e in entries} >= {"control-plane", "keeper", "keeper.toml", "releases"}

    # A second quickstart finds its state again and rolls out the next version.
    again = start_quickstart(tmp_path, port)
    try:
        read_until(again, "done: the node runs 1.0.2", [], INSTALL_SECONDS * 2)
    finally:
        again.send_signal(signal.SIGINT)
        assert again.wait(180) == 0
