"""The launcher on the Windows runtime under Wine: hand-over with exit code 75, commit,
and fallback from a keeper that exits at start, with Windows paths, process groups and
no fork. (Wine 8 has no CTRL_BREAK, so graceful stops of the keeper are not shown here.)"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import tomli_w

from nodekeeper.launcher import statefile
from nodekeeper.launcher.decide import State
from nodekeeper.launcher.health import status_answers
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
                "--probation-seconds",
                "8",
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
            lambda: result.exists() and result.read_text(), 60, f"the hand-over result\n{log.log}"
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
    status_port = free_port()
    settings = fast_settings(
        tmp_path,
        [wine.python, "-c", "import time; time.sleep(3600)"],
        status={"listen": f"127.0.0.1:{status_port}"},
    )
    settings["data_dir"] = windows_path(data)
    config = tmp_path / "keeper.toml"
    config.write_bytes(tomli_w.dumps(settings).encode())
    trigger = tmp_path / "trigger.json"

    launcher = WineLauncher(wine, config, trigger)
    try:
        wait_for(
            lambda: status_answers("127.0.0.1", status_port, 2.0),
            120,
            f"keeper 1.0.0\n{launcher.log}",
        )
        assert "started keeper 1.0.0" in launcher.log

        assert hand_over(trigger, installs["1.1.0"], "1.1.0", launcher) == {"ok": True}
        wait_for(
            lambda: statefile.load_state(state_dir(data)).current == "1.1.0",
            120,
            lambda: f"the commit of 1.1.0\n{launcher.log}{keeper_logs(data)}",
        )
        state = statefile.load_state(state_dir(data))
        assert (state.previous, state.pending) == ("1.0.0", None)

        wait_for(lambda: status_answers("127.0.0.1", status_port, 2.0), 60, "keeper 1.1.0")
        assert hand_over(trigger, installs["1.2.0"], "1.2.0", launcher) == {"ok": True}
        wait_for(
            lambda: statefile.load_state(state_dir(data)).failed == ("1.2.0",),
            120,
            lambda: f"the fallback from 1.2.0\n{launcher.log}{keeper_logs(data)}",
        )
        assert statefile.load_state(state_dir(data)).current == "1.1.0"
        wait_for(lambda: status_answers("127.0.0.1", status_port, 2.0), 60, "1.1.0 again")
        assert "started keeper 1.1.0" in launcher.log.rsplit("failed probation", 1)[1]
    finally:
        if launcher.proc.poll() is None:
            launcher.proc.kill()  # TerminateProcess: no Job Object yet, so the keeper stays
            launcher.proc.wait(10)
        for pid in launcher.keeper_pids():
            wine.run_code(f"import os\ntry: os.kill({pid}, 9)\nexcept OSError: pass")
        time.sleep(0.1)
