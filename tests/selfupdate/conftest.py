"""A launcher as a real child process over real keeper releases, for the self-update tests.

Timings are small (probation 3-4 s, backoff 0.2 s) but the mechanisms are the real ones:
real zips from the release builder, real keeper processes, real signals and HTTP.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import tomli_w

from nodekeeper.launcher import statefile
from nodekeeper.launcher.decide import State
from nodekeeper.launcher.health import status_answers
from nodekeeper.launcher.protocol import state_dir, versions_dir
from tests.keeper.conftest import fast_settings, free_port, program
from tests.selfupdate.keepers import TRIGGER_ENV, build_keeper, install

LAUNCHER = [sys.executable, "-m", "nodekeeper.launcher"]
# Slack for a loaded two-core machine: a keeper starts in ~0.5 s when idle, several
# seconds when the whole suite runs beside it.
PROBATION = 4.0


@pytest.fixture(autouse=True)
def no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """Downloads honour proxy variables; a CI runner's proxy must not see loopback."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def wait_for(check: Callable[[], Any], timeout: float, what: str | Callable[[], str]) -> Any:
    """``check()`` once it is truthy; ``what`` (or what it returns, read at the timeout,
    e.g. a log as it is then) says what was awaited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {_said(what)}")


def _said(what: str | Callable[[], str]) -> str:
    return what if isinstance(what, str) else what()


@dataclass
class Site:
    """One machine's keeper install: data dir, keeper config, releases."""

    root: Path
    config: Path
    data_dir: Path
    status_port: int
    node_port: int
    events: Path

    @property
    def state_dir(self) -> Path:
        return state_dir(self.data_dir)

    @property
    def versions_dir(self) -> Path:
        return versions_dir(self.data_dir)

    @property
    def trigger_file(self) -> Path:
        return self.root / "trigger.json"

    def release(self, kind: str, version: str) -> Path:
        """Build and install keeper ``version`` of fixture ``kind``; its install dir."""
        return install(build_keeper(kind, version, self.root / "releases"), self.versions_dir)

    def state(self) -> State:
        return statefile.load_state(self.state_dir)

    def set_state(self, state: State) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        statefile.save_state(self.state_dir, state)

    def status_up(self) -> bool:
        return status_answers("127.0.0.1", self.status_port, 1.0)

    def node_starts(self) -> list[int]:
        if not self.events.exists():
            return []
        return [
            int(line.split()[1])
            for line in self.events.read_text().splitlines()
            if line.startswith("start ")
        ]


def make_site(root: Path) -> Site:
    node_port = free_port()
    events = root / "node-events.txt"
    settings = fast_settings(
        root,
        program("pulse_node.py", node_port, "--events", events),
        probe={"kind": "http", "url": f"http://127.0.0.1:{node_port}/pulse"},
    )
    config = root / "keeper.toml"
    config.write_bytes(tomli_w.dumps(settings).encode())
    status_port = int(settings["status"]["listen"].rsplit(":", 1)[1])
    return Site(root, config, Path(settings["data_dir"]), status_port, node_port, events)


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return make_site(tmp_path)


class LauncherProcess:
    def __init__(
        self,
        site: Site,
        *extra: str,
        probation: float = PROBATION,
        env: dict[str, str] | None = None,
    ) -> None:
        self.site = site
        self.log_path = site.root / f"launcher-{time.monotonic_ns()}.log"
        env = dict(os.environ, **{TRIGGER_ENV: str(site.trigger_file)}, **(env or {}))
        argv = [
            *LAUNCHER,
            "--config",
            str(site.config),
            "--probation-seconds",
            str(probation),
            "--probe-interval-seconds",
            "0.2",
            "--backoff-initial-seconds",
            "0.2",
            "--backoff-max-seconds",
            "1",
            "--stop-timeout-seconds",
            "10",
            *extra,
        ]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def keeper(self) -> psutil.Process | None:
        """The launcher's keeper child, if one runs."""
        try:
            children = psutil.Process(self.proc.pid).children()
        except psutil.NoSuchProcess:
            return None
        return children[0] if children else None

    def keeper_version(self) -> str | None:
        """The version the running keeper was started as (from its command line)."""
        child = self.keeper()
        if child is None:
            return None
        try:
            cmdline = child.cmdline()
        except psutil.NoSuchProcess:
            return None
        # Between fork and exec the child still shows the launcher's command line.
        if "-c" in cmdline and len(cmdline) > cmdline.index("-c") + 2:
            return Path(cmdline[cmdline.index("-c") + 2]).name
        return "runtime" if "nodekeeper.selfupdate.entry" in cmdline else None

    def wait_running(self, version: str, timeout: float = 30) -> psutil.Process:
        """Until the keeper of ``version`` runs and its status API answers."""
        wait_for(
            lambda: self.keeper_version() == version and self.site.status_up(),
            timeout,
            f"keeper {version} answering\n{self.log}",
        )
        child = self.keeper()
        assert child is not None
        return child

    def hand_over(self, install_dir: Path, version: str, timeout: float = 20) -> dict[str, Any]:
        """Ask the running keeper (the fixture's stand-in for the machine) to hand over."""
        result = Path(str(self.site.trigger_file) + ".result")
        result.unlink(missing_ok=True)
        from tests.selfupdate.keepers import trigger

        trigger(self.site.trigger_file, install_dir, version)
        return json.loads(
            wait_for(
                lambda: result.exists() and result.read_text(),
                timeout,
                lambda: f"the hand-over result\n{self.log}",
            )
        )

    def stop(self, timeout: float = 30) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def launchers() -> Iterator[Callable[..., LauncherProcess]]:
    """Start launchers; every one still running at the end is stopped, its keeper too."""
    started: list[LauncherProcess] = []

    def start(
        site: Site, *extra: str, probation: float = PROBATION, env: dict[str, str] | None = None
    ) -> LauncherProcess:
        launcher = LauncherProcess(site, *extra, probation=probation, env=env)
        started.append(launcher)
        return launcher

    yield start
    for launcher in started:
        keeper = launcher.keeper()
        launcher.kill()
        if keeper is not None:  # PDEATHSIG kills it; this is the belt to those braces
            try:
                keeper.wait(5)
            except psutil.TimeoutExpired:
                keeper.kill()
