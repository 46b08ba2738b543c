"""The update state machine: one update from a plan to commit, rollback or hold.

Each step is a named state (``state.Step``) written to the journal *before* its side
effects, with its own way back: the one table of steps, their side effects, what recovery
does after a crash in each and how an error in each ends is ``steps.STEPS`` (rendered in
that module's docstring).

Everything up to preflight happens while the old node serves: its downtime is the
supervisor's stop + start. Decisions are pure functions elsewhere (``probation``,
``recovery``, ``retention``, ``plan``); this module walks the steps and is the I/O
around them. Its neighbours each do one job for it:

- ``fetch.fetch_verified`` and ``install.install_checked``: the one fetch → verify →
  install path (the keeper's own update uses it too); the machine journals its steps
  through their hooks;
- ``installs``: the layout of the data dir and the command of an installed version;
- ``notify`` and ``outcomes``: problems said once (log, error index, report) and the
  status snapshot;
- ``interfaces``: what the machine needs from the keeper (node, reports, error index);
- ``crashpoints``: the crash tests' kill points.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .crashpoints import CrashHook
from .download import DownloadSettings
from .errors import UpdateError
from .installs import Installs, Layout
from .interfaces import ErrorSink, Node, Reports
from .journal import Journal, JournalCorrupt
from .notify import Notifier
from .outcomes import Outcomes
from .plan import UpdatePlan
from .probation import (
    AfterFailure,
    Judgement,
    Observation,
    Rules,
    Verdict,
    after_failure,
    exits_of,
    judge,
    old_refuses_database,
    time_limit,
)
from .recovery import Action, Recovery, plan_recovery, state_from_disk
from .retention import Retention
from .state import (
    Failure,
    Step,
    UpdateState,
    advance,
    begin,
    committed,
    fail_before_switch,
    held,
    rolled_back,
)
from .trust import SignedRelease, TrustSettings

__all__ = ["JournalWriteFailed", "Layout", "MachineSettings", "UpdateMachine"]

log = logging.getLogger("nodekeeper.updater")


class JournalWriteFailed(UpdateError):
    """``state/update.json`` cannot be written (full or read-only disk, an immutable
    dir). The step it was to record has not begun; the update waits for the next cycle."""

    kind = "journal_write_failed"


class NodeHeld(UpdateError):
    """The keeper holds the node stopped on purpose (its storage is gone, decision 070):
    switching now would start nothing and the probation would blame the new version. The
    update stops before its switch, is not reported (no release is at fault) and is
    tried again next cycle."""

    kind = "node_held"
    report_kind = None  # type: ignore[assignment]


@dataclass(frozen=True)
class MachineSettings:
    process: str
    platform: str
    args: list[str]  # after the artifact's own command, placeholders expanded
    probation_seconds: float = 60.0
    start_timeout_seconds: float = 300.0
    preflight_timeout_seconds: float = 30.0
    downgrade_refused_exit_code: int = 65
    python: str = sys.executable
    # The HTTP client's settings for downloads (timeouts, CA bundle, speed floor).
    download: DownloadSettings = field(default_factory=DownloadSettings)
    # Signed releases (decision 085): None installs what the announcement's sha256 says.
    trust: TrustSettings | None = None


# -- the machine -------------------------------------------------------------------------


class UpdateMachine:
    def __init__(
        self,
        settings: MachineSettings,
        layout: Layout,
        node: Node,
        *,
        reports: Reports | None = None,
        errors: ErrorSink | None = None,
        crash: CrashHook | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.layout = layout
        self.node = node
        self.reports = reports
        self.errors = errors
        self.crash = crash or CrashHook()
        self.clock = clock
        self.journal = Journal(layout.state)
        self.retention = Retention(layout.versions, layout.downloads, errors)
        self.installs = Installs(layout.versions, settings.process, settings.python, settings.args)
        self.notify = Notifier(
            settings.process, log=log, errors=errors, reports=reports, clock=clock
        )
        self.outcomes = Outcomes(self.notify, clock)
        self.state = UpdateState(settings.process)
        self.recovery: Recovery | None = None
        # The plan of an update that stopped before its switch and will be retried: its
        # partial download is kept for the next attempt to resume.
        self.resumable: UpdatePlan | None = None

    # -- start-up ----------------------------------------------------------------------

    def recover(self) -> Recovery:
        """Read the journal and decide how to resume (before the supervisor runs). Sets
        the node's command to the version it must run and writes the recovered state."""
        installed = self.retention.installed(self.settings.process)
        try:
            stored = self.journal.read()
        except JournalCorrupt as exc:
            stored = state_from_disk(self.settings.process, installed)
            self._problem(
                "journal_corrupt",
                f"{exc}; moved to {exc.moved_to}; starting from the installed versions "
                f"(current {stored.current or 'none'})",
            )
        state = stored or UpdateState(self.settings.process)
        recovery = plan_recovery(state, installed)
        if recovery.action is Action.ABANDON and state.inflight is not None:
            self.resumable = state.inflight.plan
        if recovery.action is not Action.NOTHING:
            log.warning("update recovery: %s", recovery.note)
        self.state = recovery.state
        if recovery.state != stored:
            try:
                self._write(recovery.state)
            except JournalWriteFailed as exc:
                # The keeper must start anyway: the node runs the recovered version, and
                # the next start decides the same from the journal as it still is.
                self._problem(exc.kind, str(exc))
        self.node.set_command(self._startable(recovery.run_version, state))
        self.recovery = recovery
        return recovery

    def _startable(self, version: str | None, state: UpdateState) -> list[str] | None:
        """The command for ``version``; if its install cannot be read (a damaged
        manifest), the first other kept version that can, so the keeper always starts."""

        def unreadable(candidate: str, exc: Exception) -> None:
            self._problem(
                "install_unreadable",
                f"cannot run {self.settings.process} {candidate}: its install is "
                f"unreadable ({exc}); the next cycle installs a version again",
            )

        return self.installs.startable([version, state.current, state.previous], unreadable)

    async def resume(self) -> None:
        """Finish an update that an unexpected error (a journal write refused by a full
        disk, a bug) left in flight in this process: the same decisions as at start-up,
        with a switch when the node runs something else than the recovered version."""
        original = self.state.inflight
        recovery = plan_recovery(self.state, self.retention.installed(self.settings.process))
        log.warning("resuming an interrupted update: %s", recovery.note)
        if recovery.state != self.state:
            self._write(recovery.state)
        if recovery.action is Action.ABANDON and original is not None:
            self.resumable = original.plan
        wanted = self.argv_for(recovery.run_version) if recovery.run_version else None
        if wanted is not None and wanted != self.node.command:
            await self.node.switch(wanted)
        self.recovery = recovery
        await self.finish_recovery()

    async def finish_recovery(self) -> None:
        """Finish the step the keeper was killed in (the supervisor runs by now)."""
        recovery, self.recovery = self.recovery, None
        if recovery is None or recovery.action in (Action.NOTHING, Action.ABANDON):
            if recovery is not None and recovery.action is Action.ABANDON:
                self.sweep()
            return
        inflight = self.state.inflight
        assert inflight is not None
        generation = self.node.command_generation
        if recovery.action is Action.RESUME_PROBATION:
            await self._probation_and_after(generation, inflight.old_healthy)
        elif recovery.action is Action.FINISH_COMMIT:
            self._commit()
        elif recovery.action is Action.FINISH_ROLLBACK:
            await self._after_rollback_switch(generation)
        elif recovery.action is Action.FINISH_HOLD:
            self._finish_hold()

    # -- one update --------------------------------------------------------------------

    async def run(self, plan: UpdatePlan) -> str:
        """Carry ``plan`` through every step; returns the outcome ("committed",
        "rolled-back", "held", "failed", "kept-unproven"). Never raises UpdateError."""
        log.info(
            "updating %s %s → %s (%s)",
            plan.process,
            self.state.current or "(nothing installed)",
            plan.version,
            plan.reason,
        )
        self._enter_new(plan)
        self.resumable = plan
        try:
            zip_path = await self._fetch(plan)
            self._enter(Step.UNPACK)
            from .install import install_checked

            await asyncio.to_thread(
                install_checked,
                zip_path,
                self.layout.versions,
                plan.process,
                plan.version,
                python=self.settings.python,
                preflight_timeout=self.settings.preflight_timeout_seconds,
                before_preflight=lambda: self._enter(Step.PREFLIGHT),
            )
            new_argv = self.installs.argv_checked(plan.version)
        except JournalWriteFailed:
            raise  # nothing can be recorded: the cycle says so and retries
        except UpdateError as exc:
            return self._fail_before_switch(exc)
        view = self.node.observe()
        if view.held:
            return self._fail_before_switch(
                NodeHeld("the keeper holds the node stopped (see `hold` in its status)")
            )
        old_was_healthy = view.state == "running"
        schema_before = _schema(view) if old_was_healthy else None
        self._enter(Step.SWITCH, schema_before=schema_before, old_healthy=old_was_healthy)
        generation = await self.node.switch(new_argv)
        log.info("switched to %s %s; probation begins", plan.process, plan.version)
        return await self._probation_and_after(generation, old_was_healthy)

    async def _fetch(self, plan: UpdatePlan) -> Path:
        """Download and verify through the one fetch path (``fetch.fetch_verified``),
        journaling VERIFY (and DOWNLOAD again, when a kept zip changed on disk) before
        each. Runs in a worker thread; a cancel stops it at its next chunk."""
        from .download import make_client, part_path
        from .fetch import fetch_verified

        part = part_path(self.layout.downloads, plan.process, plan.version, plan.platform)
        settings = self.settings.download
        cancel = threading.Event()
        steps = {"download": Step.DOWNLOAD, "verify": Step.VERIFY}
        trust = self.settings.trust
        signed = SignedRelease(trust, plan.process, plan.version, plan.platform) if trust else None

        def fetch() -> Path:
            with make_client(settings) as client:
                return fetch_verified(
                    client,
                    plan.artifact,
                    part,
                    free_space_margin=settings.free_space_margin,
                    cancel=cancel,
                    speed_floor=settings.speed_floor,
                    entering=lambda step: self._enter(steps[step]),
                    signed=signed,
                )

        try:
            return await asyncio.to_thread(fetch)
        except asyncio.CancelledError:
            cancel.set()  # the thread stops at its next chunk; the .part is resumed later
            raise

    async def _probation_and_after(self, generation: int, old_was_healthy: bool) -> str:
        self._enter(Step.PROBATION)
        inflight = self.state.inflight
        assert inflight is not None
        judgement, schema_seen = await self._watch_probation(generation, old_was_healthy)
        if judgement.verdict is Verdict.PASS:
            return self._commit()
        if judgement.verdict is Verdict.KEEP_UNPROVEN:
            log.warning(
                "%s %s cannot prove its health: the node is not set up; keeping it (it was "
                "verified and passed preflight) until the node is set up",
                inflight.plan.process,
                inflight.target,
            )
            self._commit(proven=False)
            return "kept-unproven"
        failure = Failure(
            judgement.kind,
            judgement.message,
            judgement.transient,
            inflight.schema_before,
            schema_seen,
        )
        decision = after_failure(
            inflight.schema_before, schema_seen, has_previous=inflight.from_version is not None
        )
        if decision is AfterFailure.HOLD:
            return await self._hold(failure)
        return await self._rollback(failure)

    async def _watch_probation(
        self, generation: int, old_was_healthy: bool
    ) -> tuple[Judgement, int | None]:
        rules = Rules(self.settings.probation_seconds, self.settings.start_timeout_seconds)
        target = self.state.inflight.target if self.state.inflight else "?"
        switched_at = time.monotonic()
        schema_seen: int | None = None
        while True:
            change = self.node.next_change()  # before observing: no change is missed
            view = self.node.observe()
            current = view.generation >= generation
            if current and view.healthy_since_mono is not None and view.pulse_ok:
                schema = _schema(view)
                if schema is not None:
                    schema_seen = schema if schema_seen is None else max(schema_seen, schema)
            exits = exits_of(view.recent_exits, generation)
            obs = Observation(
                now=time.monotonic(),
                switched_at=switched_at,
                state=view.state,
                healthy_since=view.healthy_since_mono if current else None,
                pulse_ok=view.pulse_ok,
                exits=exits,
                last_ok=view.last_ok_mono,
                old_was_healthy=old_was_healthy,
            )
            judgement = judge(obs, rules, target)
            if judgement.verdict is not Verdict.WAIT:
                return judgement, schema_seen
            await _until(change, time_limit(obs, rules))

    # -- endings -----------------------------------------------------------------------

    def _commit(self, proven: bool = True) -> str:
        self._enter(Step.COMMIT)
        inflight = self.state.inflight
        assert inflight is not None
        message = (
            f"{inflight.plan.process} updated from {inflight.from_version or 'nothing'} "
            f"to {inflight.target}"
        )
        if not proven:
            message += " (not set up yet: health not proven)"
        self._report("update_succeeded", message, version=inflight.target, target=inflight.target)
        self._write(committed(self.state))
        self.resumable = None
        log.info("%s; committed", message)
        self._outcome("committed", message, inflight.target)
        self.sweep()
        return "committed"

    async def _rollback(self, failure: Failure) -> str:
        inflight = self.state.inflight
        assert inflight is not None and inflight.from_version is not None
        log.warning("%s; rolling back to %s", failure.message, inflight.from_version)
        self._enter(Step.ROLLBACK, failure=failure)
        generation = await self.node.switch(self.argv_for(inflight.from_version))
        return await self._after_rollback_switch(generation)

    async def _after_rollback_switch(self, generation: int) -> str:
        """The old version was started again: wait until it answers (or exits). If it
        refuses the database as too new, a migration ran after all: hold instead."""
        inflight = self.state.inflight
        assert inflight is not None and inflight.failure is not None
        deadline = time.monotonic() + self.settings.start_timeout_seconds
        if inflight.failure.kind == "node_held":
            deadline = 0.0  # nothing starts before the hold ends: nothing to wait for
        while time.monotonic() < deadline:
            change = self.node.next_change()  # before observing: no change is missed
            view = self.node.observe()
            exits = exits_of(view.recent_exits, generation)
            if exits:
                if old_refuses_database(exits[0].code, self.settings.downgrade_refused_exit_code):
                    failure = Failure(
                        "held_after_migration",
                        f"{inflight.failure.message}; {inflight.from_version} refuses the "
                        f"database as too new (exit {exits[0].code}): a migration ran",
                        schema_before=inflight.failure.schema_before,
                        schema_after=inflight.failure.schema_after,
                    )
                    return await self._hold(failure, switch_back=True)
                break
            if view.generation >= generation and view.state == "running":
                break
            await _until(change, deadline)
        failure = inflight.failure
        then = (
            "the keeper tries it again next cycle"
            if failure.transient
            else f"{inflight.target} will not be tried again until a newer version is announced"
        )
        message = (
            f"rolled back {inflight.plan.process} from {inflight.target} to "
            f"{inflight.from_version}: {failure.message}; {then}"
        )
        # out_of_space is its own report kind; every other failure is a rollback, except a
        # hold, which no release caused: the control plane must not count it against one.
        kind = "out_of_space" if failure.kind == "out_of_space" else "rolled_back"
        self._problem(
            kind,
            message,
            report_kind=None if failure.kind == "node_held" else kind,
            version=inflight.from_version,
            target=inflight.target,
        )
        self._write(rolled_back(self.state))
        if not (inflight.failure and inflight.failure.transient):
            self.resumable = None
        self._outcome("rolled-back", message, inflight.target)
        self.sweep()
        return "rolled-back"

    async def _hold(self, failure: Failure, switch_back: bool = False) -> str:
        self._enter(Step.HOLD, failure=failure)
        if switch_back:
            inflight = self.state.inflight
            assert inflight is not None
            # Back to the new version; the supervisor keeps restarting it under backoff.
            await self.node.switch(self.argv_for(inflight.target))
        return self._finish_hold()

    def _finish_hold(self) -> str:
        inflight = self.state.inflight
        assert inflight is not None
        failure = inflight.failure
        reason = failure.message if failure else "failed"
        if inflight.from_version is None:
            why = "there is no earlier version to go back to"
        else:
            why = (
                f"a database migration ran, so {inflight.from_version} cannot read the "
                "database any more"
            )
        message = (
            f"HELD on {inflight.plan.process} {inflight.target}: {reason}; {why}. The node "
            "stays on it, restarting under backoff, until a newer version is announced"
        )
        # A first install has no old version to protect from a migration: it is a failed
        # update that the node has to stay on, and is counted as such.
        kind = "held_after_migration" if inflight.from_version else "update_failed"
        self._problem(
            "held_after_migration" if inflight.from_version else "held_no_previous",
            message,
            report_kind=kind,
            version=inflight.target,
            target=inflight.target,
            schema_before=failure.schema_before if failure else None,
            schema_after=failure.schema_after if failure else None,
        )
        self._write(held(self.state, self.clock()))
        self.resumable = None
        self._outcome("held", message, inflight.target)
        self.sweep()
        return "held"

    def _fail_before_switch(self, exc: UpdateError) -> str:
        inflight = self.state.inflight
        assert inflight is not None
        remember = exc.marks_release_failed
        then = (
            f"{inflight.target} will not be tried again until a newer version is announced"
            if remember
            else "the keeper tries again next cycle"
        )
        message = (
            f"update of {inflight.plan.process} to {inflight.target} failed at "
            f"{inflight.step.value}: {exc}; the node stays on "
            f"{self.state.current or 'nothing'}; {then}"
        )
        self._problem(
            exc.kind,
            message,
            report_kind=exc.report_kind,
            version=self.state.current,
            target=inflight.target,
            **exc.report_details(),  # e.g. which signature check failed
        )
        self._write(fail_before_switch(self.state, remember))
        if remember:
            self.resumable = None
        self._outcome("failed", message, inflight.target, kind=exc.kind)
        if remember:
            self.sweep()
        return "failed"

    # -- journal, reports, status --------------------------------------------------------

    def _enter_new(self, plan: UpdatePlan) -> None:
        self.crash.before(Step.DOWNLOAD)
        self._write(begin(self.state, plan, self.clock()))
        self.crash.after(Step.DOWNLOAD)

    def _enter(self, step: Step, **changes: Any) -> None:
        """Journal ``step`` durably; only then may its side effects begin."""
        self.crash.before(step)
        self._write(advance(self.state, step, **changes))
        self.crash.after(step)

    def _write(self, state: UpdateState) -> None:
        try:
            self.journal.write(state)
        except OSError as exc:
            raise JournalWriteFailed(
                f"cannot write the update journal {self.journal.path}: "
                f"{exc.strerror or exc}; the update waits, the keeper tries again next cycle"
            ) from exc
        self.state = state

    def sweep(self) -> None:
        """Delete versions other than current and previous, leftovers, stale downloads."""
        from .download import artifact_file_name

        state = self.state
        keep_downloads = [
            artifact_file_name(p.process, p.version, p.platform)
            for p in (state.inflight.plan if state.inflight else None, self.resumable)
            if p is not None
        ]
        try:
            self.retention.sweep(self.settings.process, state.keep(), keep_downloads)
        except Exception:
            # Cleaning up is never worth failing an update for; the next cycle retries.
            log.exception("cleaning up old versions failed; trying again next cycle")

    def argv_for(self, version: str) -> list[str]:
        return self.installs.argv_for(version)

    def running_version(self) -> str | None:
        return self.state.running_version()

    def _problem(self, kind: str, message: str, **how: Any) -> None:
        """A failure: logged, indexed, and reported when ``report_kind`` is given."""
        self.notify.problem(kind, message, **how)

    def note_error(self, kind: str, message: str, *, logged: bool = False) -> None:
        """A problem outside an update (a failed check, a missing artifact): logged
        (unless the caller did) and indexed, not reported (the control plane is the one
        that failed, or knows)."""
        self.notify.problem(kind, message, logged=logged)

    def _report(
        self, kind: str, message: str, *, version: str | None, target: str | None, **details: Any
    ) -> None:
        self.notify.report(kind, message, version=version, target=target, **details)

    def _outcome(self, outcome: str, message: str, target: str, **extra: Any) -> None:
        self.outcomes.outcome(outcome, message, target, **extra)

    def snapshot(self) -> dict[str, Any]:
        return self.outcomes.snapshot(self.state)


def _schema(view: Any) -> int | None:
    pulse = view.pulse or {}
    value = pulse.get("schema_version")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


async def _until(change: asyncio.Event, deadline: float | None) -> None:
    """Sleep until the node changes or the monotonic ``deadline`` passes (None: no
    deadline): the supervisor signals every change, so nothing is polled."""
    timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(change.wait(), timeout)
