"""The keeper's alerts: its problems that need the operator, sent through ``[alerts]``.

One seam, not a call at every place a problem is found (decision 070). Everything the
keeper's parts think the operator must know already goes to the error index through one
``ErrorSink`` with a ``reason`` (the supervisor's crash loop, the firewall check, the
update machine and the keeper's own updater, the storage watch). ``AlertingErrorSink``
wraps that sink: each record passes on unchanged, and a record whose reason is in
``REASON_KINDS`` also raises an alert of that kind. What is not an event but lasts (the
control plane unreachable for long, the node offline) and whether a problem has cleared
are read from the keeper's status (``review``, pure), every ``REVIEW_SECONDS``.

Sending never blocks supervision: ``AlertHub.raise_alert`` only schedules
``AlertDispatcher.send`` (a worker thread, every channel under the dispatcher's
deadline) as a task on the keeper's loop, from whatever thread records. Debouncing is the
dispatcher's (per kind, state file), so a crash loop gives one alert; a kind that
clears is ``resolved`` there, so its next occurrence is sent at once. The keeper's stop
waits for alerts in flight at most the dispatcher's deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nodekeeper.alerts import Alert, AlertDispatcher, Dispatch
    from nodekeeper.updater.interfaces import ErrorSink

log = logging.getLogger("nodekeeper.keeper.alerts")

REVIEW_SECONDS = 5.0
# The update check fails now and then (a restart of the control plane, a flaky line);
# this long without one answer is an outage the operator should look at.
UNREACHABLE_ALERT_SECONDS = 3600.0
# A node down this long for no reason another alert names (not a crash loop, not held,
# not waiting for setup) is offline.
OFFLINE_ALERT_SECONDS = 600.0

# An error-index ``reason`` → the alert kind it raises. Reasons not here (a single crash,
# a hang the keeper fixed by restarting, a failed download it retries) are the keeper's
# to handle, not the operator's.
REASON_KINDS: dict[str, str] = {
    "crash-loop": "crash_loop",
    "firewall-blocked": "firewall_blocked",
    "storage-missing": "storage_missing",
    "disk-full": "disk_full",
    "clock-off": "clock_off",
    "identity-missing": "identity_missing",
    # The update machine's and the keeper's own updater's failures that a cycle will not
    # fix by itself: a rollback, a hold after a migration, a disk that refuses writes.
    "update_failed": "update_failed",
    "rolled_back": "update_failed",
    "held_after_migration": "update_failed",
    "out_of_space": "update_failed",
    "storage_failed": "update_failed",
    "read_only_filesystem": "update_failed",
    "journal_write_failed": "update_failed",
}

TITLES: dict[str, str] = {
    "crash_loop": "Node is crash-looping",
    "update_failed": "Node update failed",
    "firewall_blocked": "Firewall blocks the node's port",
    "disk_full": "Disk nearly full",
    "storage_missing": "Storage directory missing: node stopped",
    "node_offline": "Node is offline",
    "control_plane_unreachable": "Control plane unreachable",
    "clock_off": "Clock is wrong",
    "identity_missing": "Node identity missing",
}
# The fix when the record carries none of its own.
FIXES: dict[str, str] = {
    "crash_loop": "Read the node's log (node.log in the keeper's logs folder) for why it "
    "exits; `nodekeeper status` shows the last exits. The keeper keeps restarting it.",
    "update_failed": "`nodekeeper status` says why; the node runs the version it had. Free "
    "disk space or fix the permissions it names; the keeper tries again next cycle.",
    "node_offline": "`nodekeeper status` shows why the node is not running; read node.log "
    "in the keeper's logs folder.",
    "control_plane_unreachable": "Check this machine's internet connection, proxy and DNS; "
    "`nodekeeper status` shows the last check's error.",
}
SEVERITIES: dict[str, str] = {
    "crash_loop": "error",
    "update_failed": "error",
    "firewall_blocked": "error",
    "disk_full": "error",
    "storage_missing": "critical",
    "node_offline": "error",
    "control_plane_unreachable": "warning",
    "clock_off": "error",
    "identity_missing": "critical",
}


def alert_of(kind: str, message: str, fix: Any = None, node_id: str | None = None) -> Alert:
    from nodekeeper.alerts import Alert

    if isinstance(fix, list | tuple):
        fix = " ".join(str(f) for f in fix)
    return Alert(
        kind=kind,
        severity=SEVERITIES.get(kind, "error"),  # type: ignore[arg-type]
        title=TITLES.get(kind, kind.replace("_", " ")),
        message=message,
        fix=str(fix) if fix else FIXES.get(kind, ""),
        node_id=node_id,
    )


# -- review: what the status says (pure) ---------------------------------------------------


@dataclass(frozen=True)
class Review:
    raise_kinds: dict[str, str] = field(default_factory=dict)  # kind → message
    resolve_kinds: frozenset[str] = frozenset()
    offline_since: float | None = None


def cleared(kind: str, status: dict[str, Any]) -> bool:
    """Whether the problem of ``kind`` is over, by the keeper's status. A kind this
    cannot judge (or whose part is missing) is not cleared."""
    state = status.get("state")
    if kind in ("crash_loop", "node_offline"):
        return state == "running"
    if kind == "firewall_blocked":
        firewall = status.get("firewall") or {}
        last = firewall.get("last") or {}
        return firewall.get("enabled") is False or last.get("status") == "allowed"
    if kind in ("storage_missing", "disk_full", "clock_off", "identity_missing"):
        watch = status.get("watch")
        return isinstance(watch, dict) and kind not in (watch.get("problems") or {})
    update = status.get("update")
    if not isinstance(update, dict):
        return False
    if kind == "update_failed":
        outcome = (update.get("last_outcome") or {}).get("outcome")
        return outcome == "committed" and update.get("held") is None
    if kind == "control_plane_unreachable":
        return update.get("unreachable_since") is None
    return False


def review(
    status: dict[str, Any], active: frozenset[str], offline_since: float | None, now: float
) -> Review:
    """Which alerts to raise and which to resolve, from one status and the kinds raised
    and not yet resolved (``active``). ``offline_since`` is the wall-clock time the node
    was first seen down for no reason another alert names; returned updated."""
    raising: dict[str, str] = {}
    update = status.get("update")
    since = update.get("unreachable_since") if isinstance(update, dict) else None
    if isinstance(since, int | float) and now - since >= UNREACHABLE_ALERT_SECONDS:
        last = (update or {}).get("last_check") or {}
        raising["control_plane_unreachable"] = (
            f"the control plane {update.get('server', '')} has not answered for "
            f"{(now - since) / 60:.0f} minutes: the node gets no updates"
            + (f" (last error: {last['error']})" if last.get("error") else "")
        )
    state = status.get("state")
    down = state in ("stopped", "crash-loop", "hung") and not (
        status.get("crash_loop") or status.get("hold") or "crash_loop" in active
    )
    offline = (offline_since if offline_since is not None else now) if down else None
    if offline is not None and now - offline >= OFFLINE_ALERT_SECONDS:
        last_exit = status.get("last_exit") or {}
        raising["node_offline"] = (
            f"the node has not been running for {(now - offline) / 60:.0f} minutes"
            + (f" (last exit: {last_exit['detail']})" if last_exit.get("detail") else "")
        )
    raising = {k: v for k, v in raising.items() if k not in active}
    resolving = frozenset(k for k in active if k not in raising and cleared(k, status))
    return Review(raising, resolving, offline)


# -- the hub: sends off the loop -----------------------------------------------------------


class AlertHub:
    def __init__(
        self,
        dispatcher: AlertDispatcher,
        *,
        node_id: Callable[[], str | None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.dispatcher = dispatcher
        self.node_id = node_id
        self.clock = clock
        self.active: dict[str, str | None] = {}  # kind → node_id it was raised with
        self.sent = 0
        self.suppressed = 0
        self.failed = 0
        self.last: dict[str, Any] | None = None
        self._offline_since: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._early: list[Alert] = []  # raised before start(): sent once it runs
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock = threading.Lock()

    # -- raising (any thread) --------------------------------------------------------------

    def sink(self, inner: ErrorSink) -> AlertingErrorSink:
        return AlertingErrorSink(inner, self)

    def raise_alert(self, kind: str, message: str, fix: Any = None) -> None:
        try:
            node_id = self.node_id()
        except Exception:
            node_id = None
        alert = alert_of(kind, message, fix, node_id)
        with self._lock:
            self.active[kind] = node_id
            loop = self._loop
            if loop is None:
                self._early.append(alert)
                return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._spawn(alert)
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed: the keeper stopped
                loop.call_soon_threadsafe(self._spawn, alert)

    def _spawn(self, alert: Alert) -> None:
        task = asyncio.get_running_loop().create_task(self._send(alert))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, alert: Alert) -> None:
        try:
            dispatch: Dispatch = await self.dispatcher.send(alert)
        except Exception:
            log.exception("sending the %s alert failed", alert.kind)
            return
        self._note(dispatch)

    def _note(self, dispatch: Dispatch) -> None:
        alert = dispatch.alert
        if dispatch.suppressed:
            self.suppressed += 1
            log.info("alert %s not sent again yet (debounced)", alert.kind)
            return
        self.sent += 1
        failed = [r for r in dispatch.results if not r.ok]
        self.failed += len(failed)
        self.last = {
            "kind": alert.kind,
            "at": alert.time,
            "results": {r.channel: r.detail if not r.ok else "ok" for r in dispatch.results},
        }
        for result in failed:
            # WARNING, not ERROR: an alert channel's failure is not the node's problem
            # and must not raise an alert of its own through the index.
            log.warning(
                "alert %s not delivered by %s: %s", alert.kind, result.channel, result.detail
            )
        if len(failed) < len(dispatch.results):
            log.info("alert %s sent (%s)", alert.kind, alert.title)

    # -- running ---------------------------------------------------------------------------

    def start(self, status: Callable[[], dict[str, Any]]) -> asyncio.Task[None]:
        """Bind to the running loop, send what was raised before, then review
        ``status`` (the keeper's snapshot) every ``REVIEW_SECONDS`` until cancelled."""
        with self._lock:
            self._loop = asyncio.get_running_loop()
            early, self._early = self._early, []
        for alert in early:
            self._spawn(alert)

        async def reviewing() -> None:
            while True:
                await asyncio.sleep(REVIEW_SECONDS)
                try:
                    self.review_now(status())
                except Exception:  # a bug here must not end the keeper's alerts
                    log.exception("alert review failed")

        return asyncio.create_task(reviewing())

    def review_now(self, status: dict[str, Any]) -> Review:
        """Raise and resolve by one status (the review loop calls it; tests too)."""
        with self._lock:
            active = frozenset(self.active)
        outcome = review(status, active, self._offline_since, self.clock())
        self._offline_since = outcome.offline_since
        for kind, message in outcome.raise_kinds.items():
            self.raise_alert(kind, message)
        for kind in outcome.resolve_kinds:
            with self._lock:
                node_id = self.active.pop(kind, None)
            log.info("alert %s resolved", kind)
            # A file write (the debounce state): off the loop like the sends.
            self._spawn_call(lambda k=kind, n=node_id: self.dispatcher.resolved(k, n))
        return outcome

    def _spawn_call(self, call: Callable[[], None]) -> None:
        async def run() -> None:
            try:
                await asyncio.to_thread(call)
            except Exception:
                log.exception("alert bookkeeping failed")

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Wait for alerts in flight, at most the dispatcher's deadline (and a little)."""
        pending = set(self._tasks)
        if pending:
            await asyncio.wait(pending, timeout=self.dispatcher.deadline_seconds + 5.0)

    def snapshot(self) -> dict[str, Any]:
        return {
            "enabled": True,
            "channels": [c.name for c in self.dispatcher.channels],
            "active": sorted(self.active),
            "sent": self.sent,
            "suppressed": self.suppressed,
            "failed_deliveries": self.failed,
            "last": self.last,
        }


class AlertingErrorSink:
    """An ``ErrorSink`` that passes every record on and raises an alert for the reasons
    in ``REASON_KINDS``; a failing alert never hides the record, nor the reverse."""

    def __init__(self, inner: ErrorSink, hub: AlertHub) -> None:
        self.inner = inner
        self.hub = hub

    def record(self, source: str, level: int, message: str, **fields: Any) -> Any:
        try:
            return self.inner.record(source, level, message, **fields)
        finally:
            kind = REASON_KINDS.get(str(fields.get("reason")))
            if kind is not None:
                try:
                    self.hub.raise_alert(kind, message, fields.get("fix"))
                except Exception:
                    log.exception("cannot raise the %s alert", kind)

    # The keeper's error index has these too; the sink stands in for it.
    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
