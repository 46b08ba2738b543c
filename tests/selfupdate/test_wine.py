"""The launcher on the Windows runtime under Wine: hand-over with exit code 75, commit,
and fallback from a keeper that exits at start, with Windows paths, process groups and
no fork. Through all of it the node runs on under its node shim, which holds the node's
Job Object (decision 063): same pid, its port answering, every line it prints in its log
once; a keeper killed outright leaves it to the next keeper; the launcher killed
outright takes it down, through the shim. (Wine 8 has no CTRL_BREAK, so graceful stops
are not shown here: the shim kills the node after the stop timeout.)"""

from __future__ import annotations

import itertools
import json
import re
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import tomli_w

from nodekeeper.launcher import statefile
from nodekeeper.launcher.decide import State
from nodekeeper.launcher.protocol import state_dir, versions_dir
from tests.keeper.conftest import fast_settings, free_port
from tests.selfupdate.conftest import wait_for
from tests.selfupdate.keepers import TRIGGER_ENV, build_keeper, install

if TYPE_CHECKING:
    from tests.windows.wine import WineRuntime

# The Wine harness belongs to the Windows platform work; without it there is nothing to run.
windows_path = pytest.importorskip("tests.windows.wine").windows_path
pytestmark = [pytest.mark.wine, pytest.mark.timeout(300)]


class WineLauncher:
    """`python.exe -m nodekeeper.launcher` under Wine; output drained from a pipe (a
    Windows python.exe must not write to a regular file)."""

    def __init__(self, wine: WineRuntime, config: Path, trigger: Path) -> None:
        env = {**wine.env, TRIGGER_ENV: windows_path(trigger)}
        self.proc = subprocess.Popen(
            [
                "wine",
                wine.python,
                "-m",
                "nodekeeper.launcher",
                "--config",
                windows_path(config),
                # A keeper's start under Wine was seen to take 6.8 s with the full suite
                # running beside it, and once more than 8 s (CI, stop 20): the probation
                # must outlast the slowest start, or a good keeper is rolled back.
                "--probation-seconds",
                "20",
                "--probe-interval-seconds",
                "0.3",
                "--backoff-initial-seconds",
                "0.5",
                "--stop-timeout-seconds",
                "5",
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.decode(errors="replace"))

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def keeper_pids(self) -> list[int]:
        return [int(p) for p in re.findall(r"started keeper \S+ \(pid (\d+)\)", self.log)]


# The node: a TCP listener (its public address) and a counter on stdout every 10 ms.
NODE = """
import socket, sys, threading, time
server = socket.create_server(("127.0.0.1", {port}))
def serve():
    while True:
        conn, _ = server.accept()
        conn.close()
threading.Thread(target=serve, daemon=True).start()
n = 0
while True:
    print(f"count {{n}}", flush=True)
    n += 1
    time.sleep(0.01)
"""


class Prober:
    """Connects to the node's port every 20 ms from Linux (Wine shares loopback) and
    keeps the longest time between two answered connects."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.longest = 0.0
        self.answered = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last = None
        while not self._stop.wait(0.02):
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    pass
            except OSError:
                continue
            now = time.monotonic()
            if last is not None:
                self.longest = max(self.longest, now - last)
            last = now
            self.answered += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def status(port: int) -> dict[str, Any] | None:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=2) as reply:
            data: dict[str, Any] = json.loads(reply.read())
            return data
    except OSError:
        return None


def counts_in_log(data: Path) -> list[int]:
    """The node's counter lines as the keepers wrote them to its log, in file order."""
    # A few thousand short lines: far below the rotation size, all in the one file.
    text = (data / "logs" / "storagenode.log").read_text(errors="replace")
    return [int(n) for n in re.findall(r"count (\d+)", text)]


def first_gap(counts: list[int]) -> list[int]:
    """The counts around the first place they are not consecutive, for a failure message."""
    for i, (a, b) in enumerate(itertools.pairwise(counts)):
        if b != a + 1:
            return counts[max(0, i - 2) : i + 3]
    return []


def keeper_logs(data: Path) -> str:
    """The keepers' own log files, for a failure message."""
    return "".join(
        f"\n--- {path.name}\n{path.read_text(errors='replace')[-4000:]}"
        for path in sorted((data / "logs").glob("*.log"))
    )


def hand_over(trigger: Path, install_dir: Path, version: str, log: WineLauncher) -> dict:
    result = Path(str(trigger) + ".result")
    result.unlink(missing_ok=True)
    trigger.write_text(json.dumps({"install_dir": windows_path(install_dir), "version": version}))
    return json.loads(
        wait_for(
            lambda: result.exists() and result.read_text(),
            60,
            lambda: f"the hand-over result\n{log.log}",  # the log as it is at the timeout
        )
    )


def test_launcher_hands_over_commits_and_falls_back_on_windows(
    tmp_path: Path, wine: WineRuntime
) -> None:
    data = tmp_path / "data"
    installs = {
        v: install(build_keeper(kind, v, tmp_path / "rel"), versions_dir(data))
        for kind, v in (("good", "1.0.0"), ("good", "1.1.0"), ("exit_at_start", "1.2.0"))
    }
    state_dir(data).mkdir(parents=True)
    statefile.save_state(state_dir(data), State(current="1.0.0"))
    status_port, node_port = free_port(), free_port()
    settings = fast_settings(
        tmp_path,
        [wine.python, "-c", NODE.format(port=node_port)],
        status={"listen": f"127.0.0.1:{status_port}"},
    )
    settings["data_dir"] = windows_path(data)
    config = tmp_path / "keeper.toml"
    config.write_bytes(tomli_w.dumps(settings).encode())
    trigger = tmp_path / "trigger.json"

    def node_pid() -> int | None:
        seen = status(status_port)
        return seen.get("pid") if seen else None

    def with_node() -> dict[str, Any] | None:
        """The status once the keeper runs a node (a new keeper answers before that)."""
        seen = status(status_port)
        return seen if seen and seen.get("pid") else None

    launcher = WineLauncher(wine, config, trigger)
    prober = None
    try:
        node = wait_for(node_pid, 120, lambda: f"keeper 1.0.0 and its node\n{launcher.log}")
        assert "started keeper 1.0.0" in launcher.log
        record = json.loads((data / "state" / "node.json").read_text())
        shim = record["shim"]["pid"]
        assert record["job"].startswith("nodekeeper-"), record
        prober = Prober(node_port)
        wait_for(lambda: prober.answered >= 5, 30, "the node's port")

        assert hand_over(trigger, installs["1.1.0"], "1.1.0", launcher) == {"ok": True}
        wait_for(
            lambda: statefile.load_state(state_dir(data)).current == "1.1.0",
            120,
            lambda: f"the commit of 1.1.0\n{launcher.log}{keeper_logs(data)}",
        )
        state = statefile.load_state(state_dir(data))
        assert (state.previous, state.pending) == ("1.0.0", None)
        after_commit = wait_for(with_node, 60, "keeper 1.1.0 with the node")
        assert (after_commit["pid"], after_commit["adoption"]) == (node, "adopted")

        assert hand_over(trigger, installs["1.2.0"], "1.2.0", launcher) == {"ok": True}
        wait_for(
            lambda: statefile.load_state(state_dir(data)).failed == ("1.2.0",),
            120,
            lambda: f"the fallback from 1.2.0\n{launcher.log}{keeper_logs(data)}",
        )
        assert statefile.load_state(state_dir(data)).current == "1.1.0"
        back = wait_for(with_node, 60, "1.1.0 again, with the node")
        assert "started keeper 1.1.0" in launcher.log.rsplit("failed probation", 1)[1]
        assert (back["pid"], back["adoption"]) == (node, "adopted")

        # Through the hand-over and the fallback, every line the node printed reached its
        # log once, in order (what the keeper has written so far).
        handed_over = counts_in_log(data)
        assert len(handed_over) > 100, handed_over[:3]
        assert handed_over == list(range(len(handed_over))), first_gap(handed_over)

        # A keeper ended by TerminateProcess: the next one takes the same node over.
        keepers = launcher.keeper_pids()
        wine.run_code(f"import os\nos.kill({keepers[-1]}, 9)")
        wait_for(
            lambda: len(launcher.keeper_pids()) > len(keepers) and with_node(),
            60,
            lambda: f"a keeper after the kill\n{launcher.log}{keeper_logs(data)}",
        )
        after_kill = with_node() or {}
        assert (after_kill.get("pid"), after_kill.get("adoption")) == (node, "adopted")
        prober.stop()
        print(f"node port: {prober.answered} connects, longest gap {prober.longest * 1000:.0f} ms")
        # The node's port never stopped answering through three keeper changes (the same
        # pid, asserted above, says it was never restarted; a restart under Wine takes
        # seconds). The bound is loose for the full suite's load: the prober's own thread
        # was seen to stall 121 ms there; bench/selfupdate_downtime.py has the real figure.
        assert prober.longest < 0.5, f"longest gap {prober.longest:.3f} s"
        # Across the kill: still in order and never twice; the lines that were on their
        # way to the killed keeper (at most one message of the shim's) may be lost, as
        # decision 063 says, and nothing else.
        counts = counts_in_log(data)
        assert counts[: len(handed_over)] == handed_over
        assert all(b > a for a, b in itertools.pairwise(counts)), first_gap(counts)
        gaps = [(a, b) for a, b in itertools.pairwise(counts) if b != a + 1]
        assert len(gaps) <= 1 and all(b - a <= 257 for a, b in gaps), gaps

        # The launcher ended outright: its job takes the keeper at once; the shim, which
        # broke away from that job, sees the launcher go and takes the node down.
        keeper = launcher.keeper_pids()[-1]
        launcher.proc.kill()
        launcher.proc.wait(10)
        wait_for(
            lambda: not wine_alive(wine, [keeper, node, shim]),
            30,
            lambda: f"the keeper, the node and its shim to end\n{shim_log(data)}",
        )
    finally:
        if prober is not None:
            prober.stop()
        if launcher.proc.poll() is None:
            launcher.proc.kill()  # TerminateProcess: its job takes the keeper along
            launcher.proc.wait(10)
        for pid in launcher.keeper_pids():
            wine.run_code(f"import os\ntry: os.kill({pid}, 9)\nexcept OSError: pass")
        time.sleep(0.1)


def wine_alive(wine: WineRuntime, pids: list[int]) -> list[int]:
    """Which of these Windows pids still run (asked inside Wine)."""
    code = (
        "import json, win32api, win32process\nalive = []\n"
        f"for pid in {pids!r}:\n"
        "    try: h = win32api.OpenProcess(0x1000, False, pid)\n"
        "    except win32api.error: continue\n"
        "    if win32process.GetExitCodeProcess(h) == 259: alive.append(pid)\n"
        "print('ALIVE ' + json.dumps(alive))"
    )
    output = wine.run_code(code).output
    found = re.search(r"ALIVE (\[.*\])", output)
    assert found, output
    return list(json.loads(found.group(1)))


def shim_log(data: Path) -> str:
    path = data / "state" / "shim" / "node-shim.log"
    return path.read_text(errors="replace") if path.exists() else "(no shim log)"
