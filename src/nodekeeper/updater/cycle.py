"""The check loop: announcement → decision → a plan runner, on a jittered interval.

One class, two loops in the keeper process: the node's (its runner is the update
machine, ``updater.machine``) and the keeper's own (its runner is
``nodekeeper.selfupdate.runner.SelfUpdater``, which hands over to the launcher). What
differs between them is a parameter, not a second copy (docs/decisions/046-one-check-loop.md):

- the runner (:class:`PlanRunner`): what carries out a plan, whose state the decision
  reads, whose snapshot the status shows;
- ``node``: the node whose setup the updates wait for; None for the keeper's own loop,
  which updates the keeper whatever the node is doing;
- ``label``: how its log lines begin ("update …" for the node, "keeper update …");
- ``says_shared_problems``: the two loops check the same control plane for the same node
  identity, so only the node's loop warns about and indexes an unreachable control
  plane or a missing identity; the keeper's loop logs its failed checks at INFO.

Timing is ``schedule``'s (random first delay, interval × (1 ± jitter), backoff on
failed checks, Retry-After as a floor). A failed update is not a failed check: it is
retried on the next regular cycle, as the seed document asks for every failure case.
Each cycle also retries deletions of old versions that failed.

- Nothing installed yet: the first check is immediate (there is nothing to run until
  it installs a version, and no fleet-wide herd: a keeper installs once).
- The node is not set up (exit 78): checks go on (the first install must happen so the
  operator can run setup), but no switch is made while the installed version waits for
  setup: no update loop and no rollback storm on a machine nobody has configured yet.
- No identity yet: the rollout math needs the node ID, so only the minimum applies.
- Each decision is summarised (``why``) for the status; a decision that differs from
  the last one is logged once at INFO, a repeated one at DEBUG.
- A runner that hands over (the keeper's own, :data:`HANDED_OVER`) ends the loop: the
  process is on its way out.
- Before an update is carried out, ``may_update`` (the operator's quiet window and pause,
  ``updater.maintenance``; decision 069) is asked whether it may start now. Checks go on
  either way; a held update is a decision of its own (``HELD``, "... held by the quiet
  window until 23:00") and is carried out by the first cycle after the hold ends. Below
  the network's minimum, or with nothing installed yet, nothing holds it.
- ``check_now`` (the status API's ``POST /update/check``) wakes the loop for a cycle at
  once and returns that cycle's decision. Only the loop runs cycles, so there is never a
  second one concurrently: requests during a check wait for the next cycle that starts
  after them (several requests share it), and a request while an update is being carried
  out is answered at once with that update instead of a check.

The loop reads time and waits between cycles through a :class:`Clock` (the system's by
default), so a test can run a given number of cycles without sleeping through their
intervals and read the delays the loop asked for (docs/decisions/060-*).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from nodekeeper.version.decision import MINIMUM, SUGGESTED_OVER_BAD_MINIMUM
from nodekeeper.version.nodeid import parse_node_id
from nodekeeper.version.schema import Announcement, Rollout

from .errors import CheckFailed, IdentityUnavailable, NoArtifact, UpdateError
from .machine import JournalWriteFailed
from .maintenance import HELD, Verdict
from .plan import NoUpdate, UpdatePlan, plan_update
from .schedule import CheckTiming, first_delay, next_delay
from .why import NO_ARTIFACT, NOT_ANNOUNCED, decision_key, summarize

log = logging.getLogger("nodekeeper.updater")

# A control plane that stays unreachable is logged at WARNING once, then this often.
CHECK_FAILURE_LOG_SECONDS = 3600.0
# A heartbeat goes out when the running version changes, else at most this often: the
# control plane counts nodes per version over days, and a keeper checking every few
# seconds (tests, an impatient operator) must not spend its report rate on them.
HEARTBEAT_SECONDS = 3600.0
NO_ROLLOUT = Rollout(seed="", cursor="0" * 64)
# What ``PlanRunner.run`` returns when this process handed over to a new version of
# itself (the keeper's own update): no more cycles in this process.
HANDED_OVER = "handed-over"


class Clock(Protocol):
    """The loop's notion of time: the wall clock for what the status shows, a monotonic
    one for intervals, and the wait between cycles that ``check_now`` cuts short."""

    def wall(self) -> float: ...

    def monotonic(self) -> float: ...

    async def wait(self, seconds: float, wake: asyncio.Event) -> None:
        """Return after ``seconds``, or as soon as ``wake`` is set."""
        ...


class SystemClock:
    """The real clock: ``time.time``, the event loop's monotonic time (asyncio's default
    loop reads ``time.monotonic``) and a wait on the event with a timeout."""

    def wall(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def wait(self, seconds: float, wake: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), seconds)


SYSTEM_CLOCK = SystemClock()


class PlanRunner(Protocol):
    """What carries out the plans a cycle decides: ``updater.machine.UpdateMachine`` for
    the node, ``selfupdate.runner.SelfUpdater`` for the keeper itself."""

    settings: Any  # .process and .platform: what the announcement is read for
    state: Any  # .current, .current_or_zero, .failed, .inflight (None: nothing half-done)

    async def finish_recovery(self) -> None: ...

    async def resume(self) -> None: ...

    async def run(self, plan: UpdatePlan) -> str: ...

    def sweep(self) -> None: ...

    def note_error(self, kind: str, message: str, *, logged: bool = False) -> None:
        """Say a problem of the loop's (a failed check, a missing artifact) through the
        runner's ``updater.notify.Notifier``: logged at WARNING unless the loop
        ``logged`` it already, indexed with the runner's own fields, not reported (the
        control plane is the one that failed, or knows)."""
        ...

    def running_version(self) -> str | None: ...

    def snapshot(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class CycleSettings:
    server: str
    timing: CheckTiming
    first_check_now: bool = False
    node_id: str | None = None  # Storj string form; None: read the node's identity
    node_config_dir: Path | None = None


def without_rollout(announcement: Announcement, process: str) -> Announcement:
    """The announcement with ``process``'s rollout removed (pure): what a node without
    an identity may act on, the minimum only."""
    entry = announcement.processes.get(process)
    if entry is None:
        return announcement
    processes = dict(announcement.processes)
    processes[process] = entry.model_copy(update={"rollout": NO_ROLLOUT})
    return announcement.model_copy(update={"processes": processes})


def needs_setup(view: Any) -> bool:
    """Whether the node waits for setup (pure over a ``RunView``): in ``needs-setup``, or
    in one of the supervisor's rechecks since its last exit said "not set up"."""
    if view.state == "needs-setup":
        return True
    last = view.recent_exits[-1] if view.recent_exits else None
    return view.state == "starting" and last is not None and last.reason == "not-set-up"


def heartbeat_due(last: tuple[str, float] | None, version: str, now: float) -> bool:
    """Whether to send a heartbeat now (pure): ``last`` is (version, time) of the last."""
    return last is None or last[0] != version or now - last[1] >= HEARTBEAT_SECONDS


def first_check_delay(settings: CycleSettings, installed: bool, u: float) -> float:
    """Seconds from start to the first check (pure)."""
    if settings.first_check_now or not installed:
        return 0.0
    return first_delay(settings.timing, u)


class UpdateCycle:
    def __init__(
        self,
        settings: CycleSettings,
        runner: PlanRunner,
        node: Any,
        *,
        reports: Any = None,
        rand: Callable[[], float] = random.random,
        client_factory: Callable[[], Any] | None = None,
        clock: Clock = SYSTEM_CLOCK,
        label: str = "update",
        says_shared_problems: bool = True,
        update_lock: asyncio.Lock | None = None,
        may_update: Callable[[bool], Verdict] | None = None,
    ) -> None:
        self.settings = settings
        # The operator's hold (quiet window, pause): called with "below the minimum".
        self.may_update = may_update
        # Held while a plan is carried out. The keeper's loop and the node's share one,
        # so the keeper never hands over while the node's update is between download
        # and commit, and the node's never starts while the keeper is on its way out
        # (docs/decisions/063-node-shim-owns-the-node-across-handovers.md).
        self.update_lock = update_lock if update_lock is not None else asyncio.Lock()
        self.runner = runner
        self.node = node  # None: updates do not wait for the node's setup
        self.label = label
        self.says_shared_problems = says_shared_problems
        self.handed_over = False
        self.reports = reports
        self.rand = rand
        self.client_factory = client_factory
        self.failures = 0
        self.checks = 0
        self.last_check: dict[str, Any] | None = None
        self.next_check_mono: float | None = None
        self._previous: Any = None  # the last FetchedAnnouncement (its ETag)
        self._said: set[str] = set()  # one-time messages already logged
        self._failure_logged: float | None = None
        self._heartbeat_sent: tuple[str, float] | None = None
        self.clock = clock
        self.decision: dict[str, Any] | None = None  # the last decision's summary
        self.unreachable_since: float | None = None  # wall clock of the first failed check
        self.identity_error: str | None = None
        self.checking = False
        self.updating: str | None = None  # the target of the update being carried out
        self._wake = asyncio.Event()
        # Callers of check_now waiting for the next cycle to start, and the ones the
        # cycle in progress answers.
        self._waiting: list[asyncio.Future[dict[str, Any]]] = []
        self._answering: list[asyncio.Future[dict[str, Any]]] = []

    async def run(self) -> None:
        """Until cancelled or handed over: finish recovery, then check, decide, update,
        repeat."""
        try:
            async with self.update_lock:  # may finish an update in flight
                await self.runner.finish_recovery()
        except Exception:
            log.exception("update recovery failed; the next cycle tries again")
        delay = first_check_delay(self.settings, self.runner.state.current is not None, self.rand())
        while not self.handed_over:
            self.next_check_mono = self.clock.monotonic() + delay
            await self.clock.wait(delay, self._wake)
            self.next_check_mono = None
            retry_after = await self._cycle()
            delay = next_delay(self.settings.timing, self.failures, self.rand(), retry_after)

    async def _cycle(self) -> float | None:
        """One cycle that answers the check_now callers waiting when it began."""
        self._wake.clear()
        self._answering, self._waiting = self._waiting, []
        self.checking = True
        try:
            return await self.once()
        finally:
            self.checking = False
            self.updating = None
            self._answer()  # a cycle that ended without a decision (recovery, a bug)

    async def check_now(self) -> dict[str, Any]:
        """Run a cycle now (see the module docstring); returns its result."""
        if self.updating is not None:
            return self._result(busy=True)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        self._wake.set()
        return await asyncio.shield(future)

    def _result(self, busy: bool = False) -> dict[str, Any]:
        return {
            "busy": busy,
            "updating": self.updating,
            "check": self.last_check,
            "decision": self.decision,
        }

    def _answer(self) -> None:
        answering, self._answering = self._answering, []
        result = self._result()
        for future in answering:
            if not future.done():
                future.set_result(result)

    async def once(self) -> float | None:
        """One cycle; returns the server's Retry-After if a check was refused with one."""
        retry_after = None
        try:
            fetched = await asyncio.to_thread(self._fetch)
        except CheckFailed as exc:
            self.failures += 1
            self._check_failed(exc)
            retry_after = exc.retry_after
            self._answer()
        else:
            if self.failures and self.says_shared_problems:
                log.info("control plane reachable again after %d failed checks", self.failures)
            self.failures = 0
            self.unreachable_since = None
            self.checks += 1
            try:
                await self._act(fetched.announcement)
            except JournalWriteFailed as exc:
                self._once(f"journal:{exc}", str(exc), error=exc)
            except Exception:
                # A bug must not end the loop that keeps the node up to date.
                log.exception("update cycle failed unexpectedly; trying again next cycle")
        try:
            self.runner.sweep()
        except Exception:
            log.exception("cleaning up old versions failed; trying again next cycle")
        self._heartbeat()
        return retry_after

    # -- steps -----------------------------------------------------------------------

    def _fetch(self) -> Any:
        from .checker import fetch_announcement
        from .download import make_client

        factory = self.client_factory or make_client
        with factory() as client:
            fetched = fetch_announcement(client, self.settings.server + "/", self._previous)
        self._previous = fetched
        self.last_check = {
            "ok": True,
            "at": self.clock.wall(),
            "etag": fetched.etag,
            "not_modified": fetched.not_modified,
        }
        return fetched

    async def _act(self, announcement: Announcement) -> None:
        runner = self.runner
        if runner.state.inflight is not None:
            # An earlier cycle's update stopped half-way on an unexpected error: finish or
            # undo it first; never start another update over it.
            self.updating = runner.state.inflight.target
            self._answer()
            await runner.resume()
            return
        state = runner.state
        process = runner.settings.process
        waits = self.node is not None and state.current is not None
        if waits and needs_setup(self.node.observe()):
            self._once(
                "needs-setup",
                f"the node is not set up; updates of {process} wait until it is "
                "(the installed version stays)",
            )
            self._answer()
            return
        self._said.discard("needs-setup")
        # The summary shows the announced rollout even when the decision cannot use it.
        entry = announcement.processes.get(process)
        node_id: bytes | None
        try:
            node_id = self._node_id()
        except IdentityUnavailable as exc:
            self.identity_error = str(exc)
            if self.says_shared_problems:
                self._once("identity", f"{exc}; only the minimum version applies until then")
            announcement = without_rollout(announcement, process)
            node_id = None
        else:
            self.identity_error = None
            self._said.discard("identity")
        summary = {"current": state.current, "entry": entry, "node_id": node_id}
        try:
            decision = plan_update(
                announcement,
                process,
                state.current_or_zero,
                node_id or bytes(32),
                runner.settings.platform,
                state.failed,
            )
        except NoArtifact as exc:
            at = self.clock.wall()
            self._decided(summarize(code=NO_ARTIFACT, reason=str(exc), at=at, **summary))
            self._once(f"no-artifact:{exc}", str(exc), error=exc)
            return
        if isinstance(decision, NoUpdate):
            found = decision.decision
            self._decided(
                summarize(
                    code=found.code if found else NOT_ANNOUNCED,
                    reason=decision.reason,
                    skipped=decision.skipped_failed,
                    at=self.clock.wall(),
                    **summary,
                )
            )
            self._said = {k for k in self._said if not k.startswith("journal:")}
            return
        assert isinstance(decision, UpdatePlan)
        held = self._held(decision, state.current is None)
        if held is not None:
            self._decided(
                summarize(
                    code=HELD,
                    reason=f"{decision.version} is due ({decision.reason}); {held}",
                    at=self.clock.wall(),
                    **summary,
                )
            )
            return
        self._decided(
            summarize(
                code=decision.code,
                reason=decision.reason,
                target=decision.version,
                at=self.clock.wall(),
                **summary,
            )
        )
        self.updating = decision.version
        self._answer()
        await self.update_lock.acquire()
        outcome = None
        try:
            outcome = await runner.run(decision)
        finally:
            # After a hand-over the lock stays taken: this keeper is on its way out, and
            # no update of the node may start under it (the next keeper decides again).
            if outcome != HANDED_OVER:
                self.update_lock.release()
        if outcome == HANDED_OVER:
            self.handed_over = True

    def _held(self, plan: UpdatePlan, nothing_installed: bool) -> str | None:
        """Why the operator's hold keeps ``plan`` from starting now, or None."""
        if self.may_update is None:
            return None
        below = plan.code in (MINIMUM, SUGGESTED_OVER_BAD_MINIMUM) or nothing_installed
        try:
            verdict = self.may_update(below)
        except Exception:
            # A broken hold must not stop updates for good (nor crash the loop).
            log.exception("cannot read the quiet window or pause; not holding the update")
            return None
        return None if verdict.allowed else verdict.why

    def _decided(self, summary: dict[str, Any]) -> None:
        """Keep the decision for the status; say it at INFO when it changed."""
        changed = decision_key(summary) != decision_key(self.decision)
        self.decision = summary
        if changed:
            log.info("%s decision: %s", self.label, summary["reason"])
        else:
            log.debug("%s decision unchanged: %s", self.label, summary["reason"])
        self._answer()

    def _node_id(self) -> bytes:
        if self.settings.node_id:
            return parse_node_id(self.settings.node_id)
        if self.settings.node_config_dir is None:
            raise IdentityUnavailable("no node config dir")
        from .identity import read_node_id

        return read_node_id(self.settings.node_config_dir)

    def _heartbeat(self) -> None:
        version = self.runner.running_version()
        if self.reports is None or version is None:
            return
        now = self.clock.monotonic()
        if not heartbeat_due(self._heartbeat_sent, version, now):
            return
        self._heartbeat_sent = (version, now)
        try:
            self.reports.heartbeat(self.runner.settings.process, version)
        except Exception:
            log.exception("cannot queue a heartbeat")

    # -- messages ----------------------------------------------------------------------

    def _check_failed(self, exc: CheckFailed) -> None:
        now_wall = self.clock.wall()
        if self.unreachable_since is None:
            self.unreachable_since = now_wall
        self.last_check = {
            "ok": False,
            "at": now_wall,
            "error": str(exc),
            "failures": self.failures,
        }
        if not self.says_shared_problems:  # the node's loop warns and indexes it
            log.info("%s check failed (%d in a row): %s", self.label, self.failures, exc)
            return
        now = self.clock.monotonic()
        if self._failure_logged is None or now - self._failure_logged >= CHECK_FAILURE_LOG_SECONDS:
            self._failure_logged = now
            log.warning("%s check failed (%d in a row): %s", self.label, self.failures, exc)
        else:
            log.info("%s check failed (%d in a row): %s", self.label, self.failures, exc)
        if self.failures == 1:
            # The line above is this loop's own (with the count, rate-limited); the
            # problem is indexed once per outage through the runner's Notifier.
            self.runner.note_error(exc.kind, f"{self.label} check failed: {exc}", logged=True)

    def _once(self, key: str, message: str, error: UpdateError | None = None) -> None:
        """Say something that holds until the situation changes once, not every cycle."""
        if key in self._said:
            return
        self._said.add(key)
        if error is not None:  # a problem: the runner's Notifier logs and indexes it
            self.runner.note_error(error.kind, message)
        else:  # a state the operator should know of, not a failure
            log.info(message)

    def snapshot(self) -> dict[str, Any]:
        next_in = (
            max(0.0, self.next_check_mono - self.clock.monotonic())
            if self.next_check_mono is not None
            else None
        )
        return {
            **self.runner.snapshot(),
            "server": self.settings.server,
            "checks": self.checks,
            "failed_checks_in_row": self.failures,
            "unreachable_since": self.unreachable_since,
            "last_check": self.last_check,
            "checking": self.checking,
            "next_check_in": next_in,
            "next_check_at": self.clock.wall() + next_in if next_in is not None else None,
            "decision": self.decision,
            "identity_error": self.identity_error,
        }
