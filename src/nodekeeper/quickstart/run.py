"""Runs the quickstart: brings the local system up, plays the rollout, shows it live."""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from pathlib import Path
from typing import Any

from nodekeeper.cli.errors import CommandError
from nodekeeper.logs import read_errors_since
from nodekeeper.server.client import AdminClientError
from nodekeeper.server.commands import parse_listen
from nodekeeper.version.versions import parse_version

from .instance import InstanceLock
from .leftovers import RunRecord, Started, end_leftovers
from .system import (
    ControlPlaneThread,
    KeeperProcess,
    Ports,
    set_up_node,
    write_keeper_config,
)
from .view import Feed, render, status_changes

PROCESS = "storagenode"
FIRST_VERSION = "1.0.0"
TICK = 0.5
RAMP_STEP_PERCENT = 25.0
RAMP_STEP_SECONDS = 4.0
INSTALL_TIMEOUT = 180.0


def default_data_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("nodekeeper", appauthor=False)) / "quickstart"


class Stopper:
    """SIGINT, SIGTERM and SIGHUP (the terminal was closed) all end the run the same way:
    as a KeyboardInterrupt in the main thread, once. A second signal while the keeper is
    being stopped is ignored, so the orderly stop is not cut short (and if quickstart is
    killed outright, the keeper's parent-death signal still stops it)."""

    SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")

    def __init__(self) -> None:
        self.stopping = False
        self.hung_up = False

    def install(self) -> None:
        # uvicorn only handles signals on its own main thread; these are ours.
        for name in self.SIGNALS:
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), self._handle)

    def _handle(self, signum: int, _frame: object) -> None:
        if signum == getattr(signal, "SIGHUP", None):
            self.hung_up = True
        if not self.stopping:
            self.stopping = True
            raise KeyboardInterrupt


def _say(text: str) -> None:
    """Print, unless the terminal is gone (after SIGHUP a write fails with EIO)."""
    with contextlib.suppress(OSError):
        print(text, flush=True)


class Demo:
    """The script: wait for the first install, publish a newer version, ramp it to 100 %
    in steps, wait for the keeper to commit it. One ``tick`` per refresh, no blocking."""

    def __init__(self, cp: ControlPlaneThread, releases: Path, feed: Feed) -> None:
        self.cp = cp
        self.releases = releases
        self.feed = feed
        self.phase = "installing"
        self.target: str | None = None
        self.percent = 0.0
        self.next_step_at = 0.0
        self.started = time.monotonic()

    def publish(self, version: str) -> None:
        from storagenode.release import build_artifact

        self.cp.publish_everywhere(PROCESS, version, build_artifact(version, self.releases))
        self.feed.add(f"control plane: published {PROCESS} {version}")

    def prepare(self, rollouts: list[dict[str, Any]]) -> None:
        """First run: publish the first version (it becomes the minimum)."""
        if not any(r["process"] == PROCESS for r in rollouts):
            self.publish(FIRST_VERSION)

    def tick(self, keeper: dict[str, Any] | None, rollouts: list[dict[str, Any]]) -> None:
        now = time.monotonic()
        running = keeper is not None and keeper["state"] == "running"
        update = (keeper or {}).get("update") or {}
        if self.phase == "installing":
            if running and update.get("current") and not update.get("step"):
                self.phase = "publishing"
                self.feed.add(f"the keeper installed and runs {update['current']}")
            elif now - self.started > INSTALL_TIMEOUT:
                raise CommandError("the keeper did not install the node in time; see keeper.log")
        elif self.phase == "publishing":
            row = next(r for r in rollouts if r["process"] == PROCESS)
            newest = max(row["versions"], key=parse_version)
            self.target = str(parse_version(newest).bump_patch())
            self.publish(self.target)
            self.cp.admin.request(
                "POST", f"/v1/admin/processes/{PROCESS}/rollout", json={"version": self.target}
            )
            self.feed.add(f"control plane: rollout of {self.target} started at 0 %")
            self.phase, self.next_step_at = "ramping", now + RAMP_STEP_SECONDS
        elif self.phase == "ramping":
            if update.get("current") == self.target:
                self.phase = "committing"
            elif now >= self.next_step_at and self.percent < 100:
                self.percent = min(100.0, self.percent + RAMP_STEP_PERCENT)
                self.cp.admin.request(
                    "PUT",
                    f"/v1/admin/processes/{PROCESS}/rollout/percent",
                    json={"percent": self.percent},
                )
                self.feed.add(f"control plane: rollout of {self.target} at {self.percent:.0f} %")
                self.next_step_at = now + RAMP_STEP_SECONDS
        elif self.phase == "committing" and self._settled_on(self.target, update, running):
            self.phase = "done"
            self.feed.add(f"done: the node runs {self.target}; Ctrl-C stops everything")

    def headline(self) -> str:
        """The current phase in one line (the live view keeps it on screen)."""
        if self.phase == "installing":
            return f"installing {PROCESS} (the keeper downloads and starts it)"
        if self.phase == "publishing":
            return "publishing a newer version"
        if self.phase == "ramping":
            return f"rolling out {self.target}: {self.percent:.0f} % of nodes"
        if self.phase == "committing":
            return f"{self.target} runs; the keeper commits it after its probation"
        return f"done: the node runs {self.target}; Ctrl-C stops everything"

    @staticmethod
    def _settled_on(version: str | None, update: dict[str, Any], running: bool) -> bool:
        return running and update.get("current") == version and not update.get("step")


def run_quickstart(data_dir: Path | None, listen: str, plain: bool | None = None) -> int:
    # Absolute: the keeper's command line names it, and the next run looks for that.
    data_dir = (data_dir or default_data_dir()).absolute()
    host, port = parse_listen(listen)
    plain = (not sys.stdout.isatty()) if plain is None else plain
    stopper = Stopper()
    stopper.install()
    # The lock refuses while another quickstart runs on data_dir. A signal before the
    # keeper existed (while ending leftovers) needs no stopping: suppressed.
    with InstanceLock(data_dir), contextlib.suppress(KeyboardInterrupt):
        _run(data_dir, host, port, plain, stopper)
    _say("stopped cleanly")
    return 0


def _run(data_dir: Path, host: str, port: int, plain: bool, stopper: Stopper) -> None:
    keeper_dir = data_dir / "keeper"
    feed = Feed()
    record = RunRecord(data_dir)
    ports = Ports.load_or_choose(data_dir)
    keeper = KeeperProcess(data_dir / "keeper.toml", data_dir / "keeper.out", ports.keeper_status)
    # Before anything binds a port or publishes: an earlier run's keeper would answer on
    # the same status port, and quickstart would drive the wrong keeper.
    ended = end_leftovers(record, keeper.config, keeper_dir / "storagenode")
    if ended:
        what = ", ".join(f"{s.role} pid {s.pid}" for s in ended)
        feed.add(f"ended what an earlier run left running: {what}", "warning")
    cp = ControlPlaneThread(data_dir / "control-plane", host, port)
    try:
        cp.start()
        feed.add(f"control plane up at {cp.url}/ (admin token: {cp.token_source})")
        demo = Demo(cp, data_dir / "releases", feed)
        demo.prepare(cp.status())
        set_up_node(keeper_dir / "storagenode", data_dir / "storage", ports)
        write_keeper_config(keeper.config, keeper_dir, cp.url, ports)
        keeper.start()
        record.add(Started.of("keeper", keeper.pid or 0))
        feed.add(f"keeper started (logs in {keeper_dir / 'logs'})")
        _loop(cp, keeper, demo, feed, keeper_dir / "logs", plain, record)
    except KeyboardInterrupt:
        if not stopper.hung_up:
            feed.add("stopping: keeper (and node), then control plane")
            _emit(feed, plain)
    except AdminClientError as exc:
        raise CommandError(f"quickstart could not drive the control plane: {exc}") from None
    finally:
        stopper.stopping = True
        keeper.stop()
        cp.stop()
        record.forget_ended()


def _emit(feed: Feed, plain: bool) -> None:
    """Plain mode (not a terminal, or --plain): each event once, as a line."""
    if plain:
        for event in feed.take_unread():
            stamp = time.strftime("%H:%M:%S", time.localtime(event.at))
            _say(f"{stamp} {event.text}")


def _loop(
    cp: ControlPlaneThread,
    keeper: KeeperProcess,
    demo: Demo,
    feed: Feed,
    logs_dir: Path,
    plain: bool,
    record: RunRecord,
) -> None:
    from rich.live import Live

    hint = f"Ctrl-C stops   keeper status: {keeper.status_url}"
    previous: dict[str, Any] | None = None
    errors_since = time.time()
    live = None if plain else Live(auto_refresh=False, screen=False)
    if live:
        live.start()
    try:
        while True:
            if keeper.exited() is not None:
                # Its own last line says why (a port in use, a config error, ...).
                raise CommandError(
                    f"the keeper exited ({keeper.exited()}): {keeper.last_words()} "
                    f"(all of it in {keeper.log_path})"
                )
            status = keeper.status()
            if status and status.get("pid"):
                record.add(Started.of("node", status["pid"]))
            for change in status_changes(previous, status):
                feed.add(change)
            previous = status
            if logs_dir.exists():
                for entry in read_errors_since(logs_dir, errors_since):
                    errors_since = max(errors_since, float(entry.get("timestamp", errors_since)))
                    level = str(entry.get("level", "error")).lower()
                    feed.add(f"{entry.get('source')}: {entry.get('message')}", level)
            rollouts = cp.status()
            demo.tick(status, rollouts)
            if live:
                screen = render(
                    rollouts,
                    status,
                    feed,
                    hint,
                    headline=demo.headline(),
                    rows=live.console.size.height,
                    control_plane=f"{cp.url}/",
                )
                live.update(screen, refresh=True)
            _emit(feed, plain)
            time.sleep(TICK)
    finally:
        if live:
            with contextlib.suppress(OSError):  # the terminal may be gone (SIGHUP)
                live.stop()
