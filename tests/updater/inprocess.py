"""The update machine and its check loop driven in-process: the harness.

What the end-to-end Lab (a control-plane process, a keeper process, the reference node,
real intervals) proves about the parts fitting together, these tests prove about the
machine's and the loop's decisions in well under a second each, with a stronger view:
every journal step, every check, every report. Real parts everywhere the decision reads
them:

- the control plane is the real ASGI app (``server.runner.build_server``: the same
  uvicorn server and fast lane) on a loopback port in a thread of this process, and
  releases are real zips (tests/artifacts.py) published through the real admin API;
- downloads, verification, unpack, preflight (a real ``version`` process of the
  release), the journal, the error index and retention all run for real on tmp_path;
- the node is `ScriptedNode` (tests/updater/scripted_node.py), a test double for the
  supervised process: the updater only ever talks to it through the ``Node`` protocol;
- the loop's clock is `SteppedClock`: "run k cycles" returns when the loop asks for its
  k-th wait, with every delay the loop asked for recorded, instead of sleeping through
  intervals and then sleeping more to prove that nothing happened;
- reports go to `RecordingReports` (the ``Reports`` protocol): the machine's part of a
  report is the call; queueing and sending are tests/keeper/reports';
- a keeper killed at a step is `KeeperKilled` raised at the crash point (the same
  ``CrashHook`` the crash matrix uses to SIGKILL the process), and "the keeper starts
  again" is a new machine and loop over the same data dir.

docs/decisions/061-in-process-update-harness.md says why these choices.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from nodekeeper.logs.error_index import ErrorIndex
from nodekeeper.logs.settings import LogSettings
from nodekeeper.server.auth import AdminToken
from nodekeeper.server.client import AdminClient
from nodekeeper.server.runner import build_server
from nodekeeper.server.settings import ServerSettings
from nodekeeper.updater.crashpoints import CrashHook
from nodekeeper.updater.cycle import CycleSettings, UpdateCycle
from nodekeeper.updater.journal import Journal
from nodekeeper.updater.machine import Layout, MachineSettings, UpdateMachine
from nodekeeper.updater.schedule import CheckTiming
from nodekeeper.updater.state import UpdateState
from nodekeeper.version.platforms import this_platform
from tests.artifacts import build_faulty, build_good
from tests.support import free_port

from .scripted_node import ScriptedNode, describe

PROCESS = "storagenode"
TOKEN = "test-admin-token-0123456789"
# Any valid node ID: the rollout position is computed from it.
NODE_ID = "12EayRS2V1kEsWESU9QMRseFhdxYxKicsiFmxrsLZHeLUtdps3S"
# Generous for a loaded 2-core machine: nothing here should take more than a second.
DEADLINE = 60.0
# The Lab's check timing: every 1 s ± 10 %, backoff 0.5 s doubling to 2 s. With u = 0.5
# every jittered delay is exactly its base, so the recorded waits are exact.
TIMING = CheckTiming(interval=1.0, jitter=0.1, backoff_initial=0.5, backoff_max=2.0)


# -- the control plane ---------------------------------------------------------------------


class LoopbackControlPlane:
    """The control plane's ASGI app under its real uvicorn server, on a loopback port, in
    a thread. stop() and start() again keep the port and the database (an outage)."""

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()  # kept across stop() and start(): see tests/support.py
        self.url = f"http://127.0.0.1:{self.port}"
        self.settings = ServerSettings(
            db_url=f"sqlite:///{data_dir / 'control-plane.db'}",
            data_dir=data_dir,
            public_url=self.url,
            admin_token=AdminToken(TOKEN, "test"),
            ramp_tick=0.05,
            poll_interval=0.1,
        )
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> LoopbackControlPlane:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        server = build_server(self.settings, "127.0.0.1", self.port, log_level="warning")
        self._server = server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="control-plane", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + DEADLINE
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the in-process control plane did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(DEADLINE)
        if self._thread.is_alive():
            raise RuntimeError("the in-process control plane did not stop")
        self._thread = None


# -- releases --------------------------------------------------------------------------------


@dataclass
class ReleaseShelf:
    """Release zips built once per test session (a build is the slow part of a test)."""

    root: Path

    def get(self, version: str, kind: str = "good", **options: Any) -> Path:
        key = hashlib.sha256(json.dumps([version, kind, options], sort_keys=True).encode())
        out = self.root / f"{version}-{kind}-{key.hexdigest()[:12]}"
        found = sorted(out.glob("*.zip")) if out.is_dir() else []
        if found:
            return found[0]
        if kind == "good":
            return build_good(version, out, extra_migration=options.get("extra_migration", 0))
        return build_faulty(kind, version, out, **options)


class Releases:
    """Publishing and rolling out through the real admin API, for this machine's
    platform: what a test does to the control plane, the same for the in-process `Rig`
    and the end-to-end `Lab` (lab.py). A subclass says where a release's zip comes from
    (`artifact`) and sets ``admin`` and ``platform``."""

    admin: AdminClient
    platform: str

    def artifact(self, version: str, kind: str = "good", **options: Any) -> Path:
        """The zip of release ``version`` (``kind``: tests/artifacts.py's)."""
        raise NotImplementedError

    def publish(self, version: str, kind: str = "good", **options: Any) -> Path:
        path = self.artifact(version, kind, **options)
        self.admin.publish(PROCESS, version, {self.platform: str(path)})
        return path

    def publish_url(self, version: str, url: str) -> None:
        self.admin.publish(PROCESS, version, {self.platform: url})

    def roll_out(self, version: str, percent: float = 100) -> None:
        base = f"/v1/admin/processes/{PROCESS}/rollout"
        self.admin.request("POST", base, json={"version": version})
        self.admin.request("PUT", f"{base}/percent", json={"percent": percent})

    def set_minimum(self, version: str) -> None:
        self.admin.request(
            "PUT", f"/v1/admin/processes/{PROCESS}/minimum", json={"version": version}
        )

    def release(self, version: str, kind: str = "good", **options: Any) -> Path:
        """Publish and roll out to every node."""
        path = self.publish(version, kind, **options)
        self.roll_out(version)
        return path


# -- the loop's clock --------------------------------------------------------------------------


class SteppedClock:
    """The check loop's ``Clock`` for tests: time moves only when the loop waits, by the
    delay it asked for, and only as many waits pass as `allow` granted; then the loop is
    parked until it is granted more or cancelled. ``waits`` lists every delay the loop
    asked for, the one it is parked in last. A wake (``check_now``) ends a wait early, as
    the system clock's does."""

    WALL_START = 1_700_000_000.0

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []
        self._granted = 0
        self._more = asyncio.Event()
        self._parked = asyncio.Event()

    def wall(self) -> float:
        return self.WALL_START + self.now

    def monotonic(self) -> float:
        return self.now

    async def wait(self, seconds: float, wake: asyncio.Event) -> None:
        self.waits.append(seconds)
        while self._granted == 0 and not wake.is_set():
            self._parked.set()
            self._more.clear()
            await _first_of(self._more.wait(), wake.wait())
        self._parked.clear()
        if wake.is_set():
            return
        self._granted -= 1
        self.now += seconds

    async def allow(self, waits: int, running: asyncio.Task[None]) -> None:
        """Let the loop pass ``waits`` more waits, and return once it is parked again (it
        finished the cycles those waits led to) or ``running`` ended (it raised)."""
        self._granted += waits
        self._parked.clear()
        self._more.set()
        parked = asyncio.ensure_future(self._parked.wait())
        try:
            await asyncio.wait_for(
                asyncio.wait({parked, running}, return_when=asyncio.FIRST_COMPLETED), DEADLINE
            )
        finally:
            parked.cancel()
        if running.done():
            running.result()  # the loop's exception, e.g. KeeperKilled


async def _first_of(*waits: Any) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


# -- what the machine tells the outside --------------------------------------------------------


@dataclass
class RecordingReports:
    """The ``Reports`` protocol (keeper.reports.Reporter), recording each call."""

    sent: list[dict[str, Any]] = field(default_factory=list)

    def report(self, kind: Any, message: str, **fields: Any) -> str:
        self.sent.append({"kind": kind, "message": message, **fields})
        return f"report-{len(self.sent)}"

    def heartbeat(self, process: str, version: str) -> str:
        return self.report(
            "heartbeat", f"{process} runs {version}", process=process, version=version
        )

    def kinds(self, heartbeats: bool = False) -> list[str]:
        return [r["kind"] for r in self.sent if heartbeats or r["kind"] != "heartbeat"]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.sent if r["kind"] == kind]


class RecordingJournal(Journal):
    """The real journal, also listing each state it wrote: the step in flight, or
    ``"-"`` for a state with nothing in flight (an update ended). ``after_write`` is
    called with that name once the state is on disk (a test's way in at a step)."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.steps: list[str] = []
        self.after_write: Callable[[str], None] = lambda step: None

    def write(self, state: UpdateState) -> None:
        super().write(state)
        step = state.inflight.step.value if state.inflight else "-"
        self.steps.append(step)
        self.after_write(step)


class KeeperKilled(BaseException):
    """The keeper died at a crash point (not an Exception: nothing in it may catch it)."""


class RaisingCrashHook(CrashHook):
    """``CrashHook`` with the same points, raising `KeeperKilled` instead of SIGKILL."""

    @staticmethod
    def _die() -> None:
        raise KeeperKilled


class Immutable:
    """Files and dirs the OS refuses to change or delete (``chattr +i``: root on
    ext4/xfs/btrfs), as a file held open on Windows; `release` undoes every one."""

    def __init__(self, probe_dir: Path) -> None:
        self.flagged: list[Path] = []
        probe = probe_dir / "immutable-probe"
        probe.write_bytes(b"")
        if shutil.which("chattr") is None or not self._chattr("+i", probe):
            pytest.skip("chattr cannot set inode flags here (needs root on ext4/xfs/btrfs)")
        self._chattr("-i", probe)

    @staticmethod
    def _chattr(flag: str, path: Path) -> bool:
        done = subprocess.run(["chattr", flag, str(path)], capture_output=True, check=False)
        return done.returncode == 0

    def set(self, path: Path) -> None:
        assert self._chattr("+i", path), path
        self.flagged.append(path)

    def moved(self, old: Path, new: Path) -> None:
        """A flagged path was renamed (a rename of its dir is allowed)."""
        self.flagged[self.flagged.index(old)] = new

    def release(self, path: Path | None = None) -> None:
        for flagged in [path] if path is not None else list(self.flagged):
            self._chattr("-i", flagged)
            self.flagged.remove(flagged)


class LogLines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self, level: int = logging.INFO) -> str:
        return "\n".join(r.getMessage() for r in self.records if r.levelno >= level)


# -- the rig -------------------------------------------------------------------------------------


class Rig(Releases):
    """One node's updater in-process: control plane, scripted node, machine, check loop.

    ``await rig.cycles(k)`` runs exactly k check cycles (the first right after start-up,
    as ``first_check = "now"``); the loop stays parked between calls. ``restart()`` is a
    new keeper over the same data dir and node."""

    def __init__(
        self,
        root: Path,
        shelf: ReleaseShelf,
        *,
        probation: float = 0.05,
        start_timeout: float = 5.0,
        set_up: bool = True,
    ) -> None:
        self.root = root
        self.shelf = shelf
        self.platform = this_platform()
        self.layout = Layout(root / "keeper")
        self.cp = LoopbackControlPlane(root / "cp").start()
        self.admin = AdminClient(self.cp.url, TOKEN)
        self.server = self.cp.url
        self.node = ScriptedNode(self.layout.versions / PROCESS, set_up=set_up)
        self.reports = RecordingReports()
        self.errors = ErrorIndex(self.layout.data_dir / "logs", LogSettings())
        self.machine_settings = MachineSettings(
            process=PROCESS,
            platform=self.platform,
            args=["run", "--config-dir", str(root / "node-config")],
            probation_seconds=probation,
            start_timeout_seconds=start_timeout,
        )
        self.log = LogLines()
        logger = logging.getLogger("nodekeeper.updater")
        self._log_level = logger.level
        logger.setLevel(logging.DEBUG)
        logger.addHandler(self.log)
        self.machine: UpdateMachine
        self.cycle: UpdateCycle
        self.clock: SteppedClock
        self._loop_task: asyncio.Task[None] | None = None
        self.crash_at = ""

    def artifact(self, version: str, kind: str = "good", **options: Any) -> Path:
        return self.shelf.get(version, kind, **options)

    # -- the keeper ------------------------------------------------------------------------

    async def install_first(self, version: str = "1.0.0", crash_at: str = "") -> None:
        """A keeper starts on a fresh node and installs ``version`` in its first cycle."""
        self.publish(version)
        self.start(crash_at)
        await self.cycles(1)
        assert self.node.running_version() == version, self.describe()

    def start(self, crash_at: str = "") -> None:
        """A keeper starts: the machine recovers its journal, the supervisor starts the
        command it chose, the loop begins (its first cycle waits for `cycles`)."""
        self.machine = UpdateMachine(
            self.machine_settings,
            self.layout,
            self.node,
            reports=self.reports,
            errors=self.errors,
            crash=RaisingCrashHook(crash_at),
        )
        self.machine.journal = RecordingJournal(self.layout.state)
        self.machine.recover()
        self.node.start()
        self.clock = SteppedClock()
        self.cycle = UpdateCycle(
            CycleSettings(server=self.server, timing=TIMING, first_check_now=True, node_id=NODE_ID),
            self.machine,
            self.node,
            reports=self.reports,
            rand=lambda: 0.5,
            clock=self.clock,
        )
        self._loop_task = asyncio.get_running_loop().create_task(self.cycle.run())

    async def cycles(self, count: int) -> None:
        """Run ``count`` check cycles (``rig.start()`` first)."""
        assert self._loop_task is not None, "rig.start() first"
        await self.clock.allow(count, self._loop_task)

    async def stop(self) -> None:
        """The keeper stops (its loop is cancelled; the node is left as it is)."""
        task, self._loop_task = self._loop_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def restart(self, crash_at: str = "") -> None:
        """The keeper (killed or stopped) starts again over the same data dir and node."""
        await self.stop()
        self.start(crash_at)

    @property
    def loop_alive(self) -> bool:
        """The keeper's check loop is still going (it neither ended nor raised)."""
        return self._loop_task is not None and not self._loop_task.done()

    @property
    def recording(self) -> RecordingJournal:
        journal = self.machine.journal
        assert isinstance(journal, RecordingJournal)
        return journal

    @property
    def steps(self) -> list[str]:
        return self.recording.steps

    # -- what it left ----------------------------------------------------------------------

    def journal(self) -> dict[str, Any]:
        return json.loads((self.layout.state / "update.json").read_text())

    def error_index(self) -> list[dict[str, Any]]:
        path = self.errors.path
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def entries(self, reason: str) -> list[dict[str, Any]]:
        return [e for e in self.error_index() if e.get("reason") == reason]

    def reasons(self) -> list[str]:
        return [str(e.get("reason")) for e in self.error_index()]

    def installed_versions(self) -> list[str]:
        versions = self.layout.versions / PROCESS
        return sorted(p.name for p in versions.iterdir()) if versions.is_dir() else []

    def updates_to(self, version: str) -> int:
        """How many times an update to ``version`` began (its "→ version" log line)."""
        return self.log.text().count(f"→ {version} ")

    def describe(self) -> str:
        """What a failed assertion shows: node, journal steps, log."""
        return json.dumps(
            {"node": describe(self.node), "steps": self.steps, "log": self.log.text()[-3000:]},
            indent=1,
            default=str,
        )

    async def close(self) -> None:
        await self.stop()
        logger = logging.getLogger("nodekeeper.updater")
        logger.removeHandler(self.log)
        logger.setLevel(self._log_level)
        self.admin.close()
        self.cp.stop()


@contextlib.asynccontextmanager
async def rig_for(root: Path, shelf_root: Path, **options: Any) -> AsyncIterator[Rig]:
    """A `Rig` that is closed afterwards, whatever the test did."""
    rig = Rig(root, ReleaseShelf(shelf_root), **options)
    try:
        yield rig
    finally:
        await rig.close()


def shelf_root(factory: Any) -> Path:
    """The session's zip shelf under pytest's ``tmp_path_factory``."""
    return Path(factory.getbasetemp()) / "release-zips"


def rig_fixture(**options: Any) -> Any:
    """A ``rig`` fixture for a test module: ``rig = rig_fixture()``."""

    @pytest.fixture
    async def rig(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
        async with rig_for(tmp_path, shelf_root(tmp_path_factory), **options) as made:
            yield made

    return rig
