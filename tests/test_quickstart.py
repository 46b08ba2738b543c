"""`nodekeeper quickstart` brings up a control plane with the example release."""

import json
import os
import signal
import subprocess
import sys
import time

import httpx

from nodekeeper.version.schema import parse_announcement
from tests.support import free_port


def test_quickstart_serves_the_example_and_the_printed_commands_work(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "nodekeeper", "quickstart", "--data-dir", str(tmp_path),
         "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, "quickstart exited early"
            lines.append(line)
            if line.startswith("Ctrl-C stops it"):
                break
        text = "".join(lines)
        url = f"http://127.0.0.1:{port}"
        assert f"{url}/" in text
        doc = parse_announcement(httpx.get(url + "/").content)
        assert doc.processes["storagenode"].minimum.version == "1.0.0"

        # the commands it printed, run as printed
        token_file = tmp_path / "control-plane" / "admin-token"
        env = dict(os.environ, NODEKEEPER_SERVER=url, NODEKEEPER_ADMIN_TOKEN=token_file.read_text())
        commands = [line.split()[1:] for line in lines if line.startswith("  nodekeeper ")]
        assert [c[:2] for c in commands] == [
            ["rollout", "status"], ["release", "publish"], ["rollout", "start"],
            ["rollout", "status"],
        ]  # fmt: skip
        for command in commands:
            subprocess.run(
                [sys.executable, "-m", "nodekeeper", *command], env=env, check=True,
                capture_output=True, timeout=60,
            )  # fmt: skip
        status = subprocess.run(
            [sys.executable, "-m", "nodekeeper", "rollout", "status", "--json"],
            env=env, check=True, capture_output=True, text=True,
        )  # fmt: skip
        row = json.loads(status.stdout)[0]
        assert row["target"] == "1.1.0" and row["state"] == "running"
        assert (
            parse_announcement(httpx.get(url + "/").content)
            .processes["storagenode"]
            .suggested.version
            == "1.1.0"
        )
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0
