"""The keeper's own updates: announcement for process ``nodekeeper`` → hand-over.

The node's update machine (``updater.machine``) owns one journal and drives the
supervisor; the keeper cannot switch itself that way (it would have to stop itself and
watch its own probation). So the keeper's update is the same first half, the updater's
own steps, and a different second half:

    fetch_verified → unpack into versions/nodekeeper/<v> → preflight (`version`)
    → selfupdate.hand_over → the launcher's probation, commit or fallback

:class:`SelfUpdater` has the shape ``updater.cycle.UpdateCycle`` drives (``state``,
``settings``, ``run``, ``sweep``, ...), so the keeper's check gets the same jitter,
backoff, ETag and heartbeat as the node's. There is no journal here: every step before
the hand-over is redone or re-verified on the next cycle (a verified zip is re-hashed,
an install is replaced), and from the hand-over on the launcher's state file is the
record. :func:`self_update_cycle` builds it for the keeper's wiring.

Downloads go to ``downloads/nodekeeper/``: the node's retention deletes every *file* in
``downloads/`` but the node's own, and leaves sub-directories alone.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nodekeeper import __version__, selfupdate
from nodekeeper.selfupdate import LauncherLink, SelfUpdateError

log = logging.getLogger("nodekeeper.selfupdate")
PROCESS = selfupdate.PROCESS


@dataclass(frozen=True)
class SelfUpdateSettings:
    platform: str
    data_dir: Path
    python: str = sys.executable
    preflight_timeout_seconds: float = 30.0
    download_settings: Any = None  # updater.download.DownloadSettings; None: defaults
    process: str = PROCESS

    @property
    def downloads(self) -> Path:
        return self.data_dir / "downloads" / PROCESS

    @property
    def versions(self) -> Path:
        return self.data_dir / "versions"


@dataclass(frozen=True)
class SelfState:
    """What ``UpdateCycle`` reads of a machine's state."""

    current: str
    failed: frozenset[str] = field(default_factory=frozenset)

    @property
    def current_or_zero(self) -> str:
        return self.current


@dataclass(frozen=True)
class _Running:
    """The cycle pauses a node's updates while the node waits for setup; the keeper's
    own updates do not wait for the node."""

    state: str = "running"


class AlwaysRunning:
    def observe(self) -> _Running:
        return _Running()


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
        self._failed: set[str] = set()
        self.handed_over: str | None = None
        self.last_outcome: dict[str, Any] | None = None
        self.last_error: dict[str, Any] | None = None

    # -- what UpdateCycle reads ------------------------------------------------------------

    @property
    def state(self) -> SelfState:
        return SelfState(
            self.version, frozenset(self._failed) | selfupdate.failed_versions(self.link)
        )

    def running_version(self) -> str:
        return self.version

    async def finish_recovery(self) -> None:
        """Nothing to finish: before the hand-over every step is redone next cycle, after
        it the launcher decides."""

    async def run(self, plan: Any) -> str:
        """Fetch, install and preflight ``plan`` (an ``updater.plan.UpdatePlan`` for
        process nodekeeper), then hand over. Never raises for an expected failure."""
        from nodekeeper.updater.errors import UpdateError

        if self.handed_over is not None:
            return "handed-over"  # the keeper is on its way out
        log.info("updating the keeper %s → %s (%s)", self.version, plan.version, plan.reason)
        try:
            installed = await asyncio.to_thread(self._install, plan)
            selfupdate.hand_over(installed, plan.version, shutdown=self.shutdown, link=self.link)
        except UpdateError as exc:
            from nodekeeper.updater.machine import remembers_failure, report_kind

            if remembers_failure(exc):
                self._failed.add(plan.version)
            return self._failed_with(report_kind(exc), exc.kind, plan.version, str(exc))
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
        """Once per cycle (``UpdateCycle`` calls it after every check): report what the
        launcher concluded since the keeper started (a commit happens a probation after
        the start, so the start-up delivery in ``nodekeeper.launched`` is too early for
        it), then delete keeper installs the launcher no longer needs."""
        if self.handed_over is not None:
            return  # the launcher is about to start it: leave everything alone
        try:
            selfupdate.deliver_outcomes(
                self.link,
                running_version=self.version,
                report=self.reports.report if self.reports is not None else None,
                record_error=self.errors.record if self.errors is not None else None,
            )
        except Exception:  # never worth failing the cycle for; the next one retries
            log.exception("cannot deliver the launcher's outcome records")
        keep = selfupdate.protected_versions(self.link) | {self.version}
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


def self_update_cycle(config: Any, supervisor: Any, reports: Any = None) -> Any | None:
    """The keeper's own check loop (an ``UpdateCycle``), or None when it cannot update
    itself: no ``[update]`` table, or not started by nodekeeper-launcher.

    The keeper's wiring starts ``cycle.run()`` beside the node's cycle and may add
    ``cycle.snapshot()`` to its status; ``supervisor.request_shutdown`` is how the
    hand-over stops the keeper (and its node) before it exits for the launcher.
    """
    link = selfupdate.launcher_link()
    update = getattr(config, "update", None)
    if update is None or link is None:
        return None
    from nodekeeper.updater.cycle import CycleSettings, UpdateCycle
    from nodekeeper.updater.download import DownloadSettings
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
    from nodekeeper.updater.download import make_client

    return UpdateCycle(
        CycleSettings(
            server=update.server,
            timing=timing,
            first_check_now=update.first_check == "now",
            node_id=update.node_id,
            node_config_dir=config.node_config_path(),
        ),
        updater,  # type: ignore[arg-type]
        AlwaysRunning(),
        reports=reports,
        client_factory=lambda: make_client(download),
    )
