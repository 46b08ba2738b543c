"""The keeper's own updates: announcement for process ``nodekeeper`` → hand-over.

The node's update machine (``updater.machine``) owns one journal and drives the
supervisor; the keeper cannot switch itself that way (it would have to stop itself and
watch its own probation). So the keeper's update is the same first half, the updater's
own steps, and a different second half:

    fetch_verified → unpack into versions/nodekeeper/<v> → preflight (`version`)
    → handover.hand_over → the launcher's probation, commit or fallback

:class:`SelfUpdater` does one update, :class:`SelfUpdateCycle` checks on the updater's
schedule (same jitter, backoff and ETag as the node's). There is no journal here: every
step before the hand-over is redone or re-verified on the next cycle (a verified zip is
re-hashed, an install is replaced), and from the hand-over on the launcher's state file
is the record. :func:`self_update_cycle` builds both for the keeper's wiring.

Downloads go to ``downloads/nodekeeper/``: the node's retention deletes every *file* in
``downloads/`` but the node's own, and leaves sub-directories alone.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nodekeeper import __version__
from nodekeeper.durable import write_durably
from nodekeeper.selfupdate import handover
from nodekeeper.selfupdate.handover import LauncherLink, SelfUpdateError

log = logging.getLogger("nodekeeper.selfupdate")
PROCESS = handover.PROCESS


@dataclass(frozen=True)
class SelfUpdateSettings:
    platform: str
    data_dir: Path
    python: str = sys.executable
    preflight_timeout_seconds: float = 30.0
    download_settings: Any = None  # updater.download.DownloadSettings; None: defaults

    @property
    def downloads(self) -> Path:
        return self.data_dir / "downloads" / PROCESS

    @property
    def versions(self) -> Path:
        return self.data_dir / "versions"

    @property
    def failed_file(self) -> Path:
        """Keeper releases that failed here before the hand-over (preflight, a bad
        artifact), kept across restarts like the launcher keeps probation failures."""
        return self.data_dir / "state" / "selfupdate-failed.json"


@dataclass(frozen=True)
class SelfState:
    """The keeper's version and the versions it will not update to."""

    current: str
    failed: frozenset[str] = field(default_factory=frozenset)


def _read_failed(path: Path) -> set[str]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return set()
    except (OSError, ValueError) as exc:
        log.warning("cannot read %s (%s); failed keeper releases may be tried again", path, exc)
        return set()
    return {v for v in data.get("failed", []) if isinstance(v, str)}


def _write_failed(path: Path, failed: set[str]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_durably(path, json.dumps({"failed": sorted(failed)}).encode())
    except OSError as exc:  # remembered in memory still; worst case one more preflight
        log.warning("cannot record failed keeper releases in %s: %s", path, exc)


class SelfUpdater:
    def __init__(
        self,
        settings: SelfUpdateSettings,
        link: LauncherLink,
        shutdown: Callable[[], None],
        *,
        reports: Any = None,
        errors: Any = None,
        version: str = __version__,
    ) -> None:
        from nodekeeper.updater.retention import Retention

        self.settings = settings
        self.link = link
        self.shutdown = shutdown
        self.reports = reports
        self.errors = errors
        self.version = version
        self.retention = Retention(settings.versions, settings.downloads, errors)
        # Releases that failed preflight here: not retried until a newer one (the
        # launcher remembers the ones that failed probation).
        self._failed: set[str] = _read_failed(settings.failed_file)
        self.handed_over: str | None = None
        self.last_outcome: dict[str, Any] | None = None
        self.last_error: dict[str, Any] | None = None

    # -- state ---------------------------------------------------------------------------

    @property
    def state(self) -> SelfState:
        return SelfState(
            self.version, frozenset(self._failed) | handover.failed_versions(self.link)
        )

    async def run(self, plan: Any) -> str:
        """Fetch, install and preflight ``plan`` (an ``updater.plan.UpdatePlan`` for
        process nodekeeper), then hand over. Never raises for an expected failure."""
        from nodekeeper.updater.errors import UpdateError

        if self.handed_over is not None:
            return "handed-over"  # the keeper is on its way out
        log.info("updating the keeper %s → %s (%s)", self.version, plan.version, plan.reason)
        try:
            installed = await asyncio.to_thread(self._install, plan)
            handover.hand_over(installed, plan.version, shutdown=self.shutdown, link=self.link)
        except UpdateError as exc:
            if exc.marks_release_failed:
                self._failed.add(plan.version)
                _write_failed(self.settings.failed_file, self._failed)
            return self._failed_with(exc.report_kind, exc.kind, plan.version, str(exc))
        except SelfUpdateError as exc:
            return self._failed_with("update_failed", "self_update_refused", plan.version, str(exc))
        self.handed_over = plan.version
        self.last_outcome = {"outcome": "handed-over", "target": plan.version, "at": time.time()}
        return "handed-over"

    def _install(self, plan: Any) -> Path:
        from nodekeeper.updater.download import DownloadSettings, make_client, part_path
        from nodekeeper.updater.fetch import fetch_verified
        from nodekeeper.updater.install import install_checked

        s = self.settings
        download = s.download_settings or DownloadSettings()
        part = part_path(s.downloads, PROCESS, plan.version, plan.platform)
        part.parent.mkdir(parents=True, exist_ok=True)
        with make_client(download) as client:
            zip_path = fetch_verified(
                client, plan.artifact, part, free_space_margin=download.free_space_margin
            )
        installed = install_checked(
            zip_path,
            s.versions,
            PROCESS,
            plan.version,
            python=s.python,
            preflight_timeout=s.preflight_timeout_seconds,
        )
        return installed.path

    def _failed_with(self, report: str, kind: str, target: str, why: str) -> str:
        message = f"keeper self-update to {target} failed: {why}; staying on {self.version}"
        self.note_error(kind, message)
        if self.reports is not None:
            self.reports.report(
                report, message, process=PROCESS, version=self.version, target_version=target
            )
        self.last_outcome = {"outcome": "failed", "target": target, "at": time.time()}
        return "failed"

    def sweep(self) -> None:
        """Once per cycle, after the check: report what the
        launcher concluded since the keeper started (a commit happens a probation after
        the start, so the start-up delivery in ``nodekeeper.selfupdate.entry`` is too early for
        it), then delete keeper installs the launcher no longer needs."""
        if self.handed_over is not None:
            return  # the launcher is about to start it: leave everything alone
        try:
            handover.deliver_outcomes(
                self.link,
                running_version=self.version,
                report=self.reports.report if self.reports is not None else None,
                record_error=self.errors.record if self.errors is not None else None,
            )
        except Exception:  # never worth failing the cycle for; the next one retries
            log.exception("cannot deliver the launcher's outcome records")
        keep = handover.protected_versions(self.link) | {self.version}
        self.retention.sweep(PROCESS, keep, [])

    def note_error(self, kind: str, message: str) -> None:
        log.warning(message)
        self.last_error = {"kind": kind, "message": message, "at": time.time()}
        if self.errors is not None:
            try:
                self.errors.record("updater", logging.ERROR, message, reason=kind, process=PROCESS)
            except Exception:
                log.exception("cannot write the error index")

    def snapshot(self) -> dict[str, Any]:
        launcher = self.link.state()
        return {
            "process": PROCESS,
            "current": self.version,
            "launcher_current": launcher.current,
            "previous": launcher.previous,
            "pending": launcher.pending.version if launcher.pending else None,
            "failed": sorted(self.state.failed),
            "handed_over": self.handed_over,
            "last_outcome": self.last_outcome,
            "last_error": self.last_error,
        }


def minimum_only(announcement: Any) -> Any:
    """The announcement without the keeper's rollout (pure): all a keeper that cannot
    compute its place in the rollout (no node identity yet) may act on."""
    from nodekeeper.version.schema import Rollout

    entry = announcement.processes.get(PROCESS)
    if entry is None:
        return announcement
    processes = {
        **announcement.processes,
        PROCESS: entry.model_copy(update={"rollout": Rollout(seed="", cursor="0" * 64)}),
    }
    return announcement.model_copy(update={"processes": processes})


@dataclass(frozen=True)
class CheckSettings:
    server: str  # the control plane; its ``/`` is the announcement
    timing: Any  # updater.schedule.CheckTiming
    first_check_now: bool = False
    node_id: str | None = None  # Storj string form; None: read the node's identity
    node_config_dir: Path | None = None


class SelfUpdateCycle:
    """The keeper's own check loop, on the updater's schedule (random first delay,
    interval × (1 ± jitter), backoff and Retry-After on failed checks, If-None-Match).

    Its own small loop rather than a second ``updater.cycle.UpdateCycle``: that one is
    built around the node (it pauses while the node waits for setup, reads the node's
    run view); the keeper updates itself whatever the node is doing, and depends here
    only on the updater's stable steps (checker, plan, schedule).
    """

    def __init__(
        self,
        settings: CheckSettings,
        updater: SelfUpdater,
        *,
        reports: Any = None,
        client_factory: Callable[[], Any],
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self.updater = updater
        self.reports = reports
        self.client_factory = client_factory
        self.rand = rand
        self.failures = 0
        self.checks = 0
        self._previous: Any = None  # the last FetchedAnnouncement (its ETag)
        self._said: set[str] = set()

    async def run(self) -> None:
        """Until cancelled (the keeper stops, or hands over)."""
        from nodekeeper.updater.schedule import first_delay, next_delay

        timing = self.settings.timing
        delay = 0.0 if self.settings.first_check_now else first_delay(timing, self.rand())
        while self.updater.handed_over is None:
            await asyncio.sleep(delay)
            retry_after = await self.once()
            delay = next_delay(timing, self.failures, self.rand(), retry_after)

    async def once(self) -> float | None:
        """One check; returns the server's Retry-After when it sent one."""
        from nodekeeper.updater.errors import CheckFailed, NoArtifact

        try:
            fetched = await asyncio.to_thread(self._fetch)
        except CheckFailed as exc:
            self.failures += 1
            log.info("keeper update check failed (%d in a row): %s", self.failures, exc)
            return exc.retry_after
        self.failures = 0
        self.checks += 1
        try:
            plan = self._plan(fetched.announcement)
        except NoArtifact as exc:
            self._once(str(exc))
            plan = None
        if plan is not None:
            await self.updater.run(plan)
        self.updater.sweep()
        if self.reports is not None and self.updater.handed_over is None:
            self.reports.heartbeat(PROCESS, self.updater.version)
        return None

    def _fetch(self) -> Any:
        from nodekeeper.updater.checker import fetch_announcement

        with self.client_factory() as client:
            fetched = fetch_announcement(client, self.settings.server + "/", self._previous)
        self._previous = fetched
        return fetched

    def _plan(self, announcement: Any) -> Any:
        """The UpdatePlan for the keeper, or None. Without the node's identity the
        rollout math cannot run: only the minimum applies (as for the node)."""
        from nodekeeper.updater.errors import IdentityUnavailable
        from nodekeeper.updater.plan import UpdatePlan, plan_update

        try:
            node_id = self._node_id()
        except IdentityUnavailable:
            announcement = minimum_only(announcement)
            node_id = bytes(32)
        state = self.updater.state
        decision = plan_update(
            announcement,
            PROCESS,
            state.current,
            node_id,
            self.updater.settings.platform,
            state.failed,
        )
        if isinstance(decision, UpdatePlan):
            return decision
        if decision.skipped_failed:
            self._once(decision.reason)
        return None

    def _node_id(self) -> bytes:
        from nodekeeper.updater.errors import IdentityUnavailable
        from nodekeeper.version.nodeid import parse_node_id

        if self.settings.node_id:
            return parse_node_id(self.settings.node_id)
        if self.settings.node_config_dir is None:
            raise IdentityUnavailable("no node config dir")
        from nodekeeper.updater.identity import read_node_id

        return read_node_id(self.settings.node_config_dir)

    def _once(self, message: str) -> None:
        """Say what holds until something changes once, not every cycle."""
        if message not in self._said:
            self._said.add(message)
            log.info("keeper update: %s", message)

    def snapshot(self) -> dict[str, Any]:
        return {
            **self.updater.snapshot(),
            "checks": self.checks,
            "failed_checks_in_row": self.failures,
        }


def self_update_cycle(config: Any, supervisor: Any, reports: Any = None) -> SelfUpdateCycle | None:
    """The keeper's own check loop, or None when it cannot update itself: no
    ``[update]`` table, or not started by nodekeeper-launcher.

    For the keeper's wiring (``keeper.commands._updating``): start ``cycle.run()`` beside
    the node's cycle and add ``cycle.snapshot()`` to the status. The hand-over stops the
    keeper through ``supervisor.request_shutdown`` (the node stops gracefully first).
    """
    link = handover.launcher_link()
    update = getattr(config, "update", None)
    if update is None or link is None:
        return None
    from nodekeeper.updater.download import DownloadSettings, make_client
    from nodekeeper.updater.schedule import CheckTiming
    from nodekeeper.version.platforms import this_platform

    ca_bundle = Path(config.expand(update.ca_bundle)) if update.ca_bundle else None
    download = DownloadSettings(
        connect_timeout=update.connect_timeout_seconds,
        read_timeout=update.read_timeout_seconds,
        ca_bundle=ca_bundle,
    )
    settings = SelfUpdateSettings(
        platform=update.platform or this_platform(),
        data_dir=config.data_path(),
        preflight_timeout_seconds=update.preflight_timeout_seconds,
        download_settings=download,
    )
    updater = SelfUpdater(
        settings,
        link,
        supervisor.request_shutdown,
        reports=reports,
        errors=getattr(supervisor, "errors", None),
    )
    timing = CheckTiming(
        interval=update.interval_seconds,
        jitter=update.jitter,
        backoff_initial=update.backoff_initial_seconds,
        backoff_max=max(update.backoff_max_seconds, update.backoff_initial_seconds),
    )
    check = CheckSettings(
        server=update.server,
        timing=timing,
        first_check_now=update.first_check == "now",
        node_id=update.node_id,
        node_config_dir=config.node_config_path(),
    )
    return SelfUpdateCycle(
        check, updater, reports=reports, client_factory=lambda: make_client(download)
    )
