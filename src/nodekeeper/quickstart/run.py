"""Runs the quickstart: brings the local system up, plays the rollout, shows it live."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Any

from nodekeeper.cli import CommandError
from nodekeeper.logs import read_errors_since
from nodekeeper.server.client import AdminClientError
from nodekeeper.server.commands import parse_listen
from nodekeeper.version.versions import parse_version

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


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


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

    @staticmethod
    def _settled_on(version: str | None, update: dict[str, Any], running: bool) -> bool:
        return running and update.get("current") == version and not update.get("step")


def run_quickstart(data_dir: Path | None, listen: str, plain: bool | None = None) -> int:
    data_dir = data_dir or default_data_dir()
    host, port = parse_listen(listen)
    plain = (not sys.stdout.isatty()) if plain is None else plain
    ports = Ports.load_or_choose(data_dir)
    keeper_dir = data_dir / "keeper"
    feed = Feed()
    cp = ControlPlaneThread(data_dir / "control-plane", host, port)
    keeper = KeeperProcess(data_dir / "keeper.toml", data_dir / "keeper.out", ports.keeper_status)
    # uvicorn only handles signals on its own main thread; SIGTERM ends us like Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        cp.start()
        feed.add(f"control plane up at {cp.url}/ (admin token: {cp.token_source})")
        demo = Demo(cp, data_dir / "releases", feed)
        demo.prepare(cp.status())
        set_up_node(keeper_dir / "storagenode", data_dir / "storage", ports)
        write_keeper_config(data_dir / "keeper.toml", keeper_dir, cp.url, ports)
        keeper.start()
        feed.add(f"keeper started (logs in {keeper_dir / 'logs'})")
        _loop(cp, keeper, demo, feed, keeper_dir / "logs", plain)
    except KeyboardInterrupt:
        feed.add("stopping: keeper (and node), then control plane")
        _emit(feed, plain)
    except AdminClientError as exc:
        raise CommandError(f"quickstart could not drive the control plane: {exc}") from None
    finally:
        keeper.stop()
        cp.stop()
    print("stopped cleanly", flush=True)
    return 0


def _emit(feed: Feed, plain: bool) -> None:
    """Plain mode (not a terminal, or --plain): each event once, as a line."""
    if plain:
        for event in feed.take_unread():
            stamp = time.strftime("%H:%M:%S", time.localtime(event.at))
            print(f"{stamp} {event.text}", flush=True)


def _loop(
    cp: ControlPlaneThread,
    keeper: KeeperProcess,
    demo: Demo,
    feed: Feed,
    logs_dir: Path,
    plain: bool,
) -> None:
    from rich.live import Live

    hint = f"announcement: {cp.url}/   keeper status: {keeper.status_url}   Ctrl-C stops"
    previous: dict[str, Any] | None = None
    errors_since = time.time()
    live = None if plain else Live(auto_refresh=False, screen=False)
    if live:
        live.start()
    try:
        while True:
            if keeper.exited() is not None:
                raise CommandError(f"the keeper exited ({keeper.exited()}); see {keeper.log_path}")
            status = keeper.status()
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
                live.update(render(rollouts, status, feed, hint), refresh=True)
            _emit(feed, plain)
            time.sleep(TICK)
    finally:
        if live:
            live.stop()
