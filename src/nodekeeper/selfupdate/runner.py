"""The keeper's own updates: a plan for process ``nodekeeper`` → hand-over.

The node's update machine (``updater.machine``) owns one journal and drives the
supervisor; the keeper cannot switch itself that way (it would have to stop itself and
watch its own probation). So the keeper's update is the same first half, the updater's
own steps, and a different second half:

    fetch_verified → unpack into versions/nodekeeper/<v> → preflight (`version`)
    → handover.hand_over → the launcher's probation, commit or fallback

:class:`SelfUpdater` carries out one plan; it is the ``PlanRunner`` of the node's own
check loop, ``updater.cycle.UpdateCycle`` (same schedule, jitter, backoff, ETag and
decision), which :func:`keeper_update_cycle` builds around it. There is no journal
here: every step before the hand-over is redone or re-verified on the next cycle (a
verified zip is re-hashed, an install is replaced), and from the hand-over on the
launcher's state file is the record.

Downloads go to ``downloads/nodekeeper/``: the node's retention deletes every *file* in
``downloads/`` but the node's own, and leaves sub-directories alone.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nodekeeper import __version__
from nodekeeper.durable import write_durably
from nodekeeper.selfupdate import handover
from nodekeeper.selfupdate.handover import LauncherLink, SelfUpdateError
from nodekeeper.updater.cycle import HANDED_OVER, CycleSettings, UpdateCycle
from nodekeeper.updater.notify import Notifier

if TYPE_CHECKING:  # updater.download pulls in httpx; the keeper imports it on first use
    from nodekeeper.updater.download import DownloadSettings
    from nodekeeper.updater.plan import UpdatePlan
    from nodekeeper.updater.trust import TrustSettings

log = logging.getLogger("nodekeeper.selfupdate")
PROCESS = handover.PROCESS
# The error-index fields of the keeper's own problems: which process, not the node
# updater's version and target (the message names both).
INDEX_FIELDS = {"process": PROCESS}


@dataclass(frozen=True)
class SelfUpdateSettings:
    platform: str
    data_dir: Path
    python: str = sys.executable
    preflight_timeout_seconds: float = 30.0
    download_settings: DownloadSettings | None = None  # None: the defaults
    # Signed releases (decision 085): the keeper's own releases are checked as the node's.
    trust: TrustSettings | None = None

    @property
    def process(self) -> str:
        """What the announcement is read for (the cycle's ``PlanRunner.settings``)."""
        return PROCESS

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
    # Never an update half-done: there is no journal, every step is redone next cycle.
    inflight: None = None

    @property
    def current_or_zero(self) -> str:
        return self.current


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
    """The keeper's ``updater.cycle.PlanRunner``: carries out a plan for process
    nodekeeper up to the hand-over, and reports and indexes what fails before it."""

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
        # The one way a problem is said: the keeper log, the error index, a report.
        self.notify = Notifier(PROCESS, log=log, errors=errors, reports=reports)
        self.retention = Retention(settings.versions, settings.downloads, errors)
        # Releases that failed preflight here: not retried until a newer one (the
        # launcher remembers the ones that failed probation).
        self._failed: set[str] = _read_failed(settings.failed_file)
        self.handed_over: str | None = None
        self.last_outcome: dict[str, Any] | None = None

    # -- state ---------------------------------------------------------------------------

    @property
    def state(self) -> SelfState:
        return SelfState(
            self.version, frozenset(self._failed) | handover.failed_versions(self.link)
        )

    def running_version(self) -> str | None:
        """The version to send heartbeats for; None once handed over (on its way out)."""
        return self.version if self.handed_over is None else None

    async def finish_recovery(self) -> None:
        """Nothing to recover: no journal (see the module docstring)."""

    async def resume(self) -> None:
        """Never called: ``state.inflight`` is always None."""

    async def run(self, plan: UpdatePlan) -> str:
        """Fetch, install and preflight ``plan`` (for process nodekeeper), then hand
        over. Never raises for an expected failure."""
        from nodekeeper.updater.errors import UpdateError

        if self.handed_over is not None:
            return HANDED_OVER  # the keeper is on its way out
        log.info("updating the keeper %s → %s (%s)", self.version, plan.version, plan.reason)
        try:
            installed = await asyncio.to_thread(self._install, plan)
            handover.hand_over(installed, plan.version, shutdown=self.shutdown, link=self.link)
        except UpdateError as exc:
            if exc.marks_release_failed:
                self._failed.add(plan.version)
                _write_failed(self.settings.failed_file, self._failed)
            return self._failed_with(
                exc.report_kind, exc.kind, plan.version, str(exc), **exc.report_details()
            )
        except SelfUpdateError as exc:
            return self._failed_with("update_failed", "self_update_refused", plan.version, str(exc))
        self.handed_over = plan.version
        self.last_outcome = {"outcome": HANDED_OVER, "target": plan.version, "at": time.time()}
        return HANDED_OVER

    def _install(self, plan: UpdatePlan) -> Path:
        from nodekeeper.updater.download import DownloadSettings, make_client, part_path
        from nodekeeper.updater.fetch import fetch_verified
        from nodekeeper.updater.install import install_checked
        from nodekeeper.updater.trust import SignedRelease

        s = self.settings
        download = s.download_settings or DownloadSettings()
        part = part_path(s.downloads, PROCESS, plan.version, plan.platform)
        part.parent.mkdir(parents=True, exist_ok=True)
        with make_client(download) as client:
            zip_path = fetch_verified(
                client,
                plan.artifact,
                part,
                free_space_margin=download.free_space_margin,
                speed_floor=download.speed_floor,  # as the node's machine fetches
                signed=SignedRelease(s.trust, PROCESS, plan.version, plan.platform)
                if s.trust
                else None,
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

    def _failed_with(self, report: str, kind: str, target: str, why: str, **details: str) -> str:
        message = f"keeper self-update to {target} failed: {why}; staying on {self.version}"
        self.notify.problem(
            kind,
            message,
            report_kind=report,
            version=self.version,
            target=target,
            index=INDEX_FIELDS,
            **details,
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

    def note_error(self, kind: str, message: str, *, logged: bool = False) -> None:
        """A problem outside an update (the cycle's: a missing artifact): logged (unless
        the caller did) and indexed, not reported."""
        self.notify.problem(kind, message, logged=logged, index=INDEX_FIELDS)

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
            "last_error": self.notify.last_error,
        }


def keeper_update_cycle(
    check: CycleSettings,
    settings: SelfUpdateSettings,
    *,
    shutdown: Callable[[], None],
    reports: Any = None,
    errors: Any = None,
    link: LauncherLink | None = None,
    update_lock: asyncio.Lock | None = None,
) -> UpdateCycle | None:
    """The keeper's own check loop from typed settings, or None when this keeper was not
    started by nodekeeper-launcher (it cannot hand over, so it must not try).

    ``check`` is the node's cycle settings (same control plane, schedule and identity);
    ``shutdown`` ends the keeper after the hand-over (``Supervisor.request_handover``:
    the node stays for the next keeper where it can). ``update_lock`` is the node's
    cycle's, so that the two never run a plan at once. Start ``cycle.run()`` beside the
    node's cycle and add ``cycle.snapshot()`` to the status as ``self_update``.
    """
    link = link if link is not None else handover.launcher_link()
    if link is None:
        return None
    from nodekeeper.updater.download import DownloadSettings, make_client

    download = settings.download_settings or DownloadSettings()
    updater = SelfUpdater(settings, link, shutdown, reports=reports, errors=errors)
    return UpdateCycle(
        check,
        updater,
        None,  # the keeper updates itself whatever the node is doing
        reports=reports,
        client_factory=lambda: make_client(download),
        label="keeper update",
        says_shared_problems=False,  # the node's loop checks the same control plane
        update_lock=update_lock,
    )
