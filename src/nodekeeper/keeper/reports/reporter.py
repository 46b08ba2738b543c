"""`Reporter`: what the updater and the supervisor call to tell the control plane.

``report()`` and ``heartbeat()`` store the report durably and return at once: they never
touch the network and never raise. ``run()`` is the background task that sends what is
queued, oldest first, one at a time, and waits as the answers say (`policy`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from nodekeeper.backoff import parse_retry_after
from nodekeeper.identity import IdentityError, NodeIdentity
from nodekeeper.keeper.reports.outbox import Item, Outbox
from nodekeeper.keeper.reports.policy import (
    RetryTiming,
    Verdict,
    classify_status,
    retry_delay,
)
from nodekeeper.keeper.reports.queue import QueueLimits
from nodekeeper.keeper.reports.record import RecordError, build_report, make_record
from nodekeeper.keeper.reports.sender import Answer, post_report, reports_url
from nodekeeper.updater.netabort import DEFAULT_REQUEST_DEADLINE
from nodekeeper.version.reports import ReportKind, new_report_id

log = logging.getLogger("nodekeeper.keeper.reports")

# A server that stays down is logged at WARNING once, then at most this often.
RETRY_LOG_SECONDS = 600.0


class IdentityProvider(Protocol):
    """``nodekeeper.identity.IdentitySource``."""

    def get(self) -> NodeIdentity: ...

    def node_id_text(self) -> str | None: ...


@dataclass(frozen=True)
class ReporterSettings:
    server_url: str  # the control plane, e.g. https://version.example.net
    directory: Path  # the queue lives here: DATA_DIR/state/reports by convention
    limits: QueueLimits = field(default_factory=QueueLimits)
    timing: RetryTiming = field(default_factory=RetryTiming)
    request_timeout: float = 10.0
    # The whole POST, however the server trickles its answer (update.request_deadline_seconds).
    request_deadline: float = DEFAULT_REQUEST_DEADLINE
    # While the identity cannot be read (node not set up), look again this often.
    identity_retry_seconds: float = 60.0
    # A CA bundle for a control plane behind a private CA (the updater's update.ca_bundle);
    # None: the system's. TLS is always verified; proxies come from the environment.
    ca_bundle: str | None = None


@dataclass
class ReporterStats:
    """For the status API and the tests: what the sender has done so far."""

    attempts: int = 0
    sent: int = 0  # stored by the server now
    duplicates: int = 0  # the server had it already (a re-send after a lost answer)
    rejected: int = 0
    failures_in_row: int = 0
    last_status: int | None = None
    last_error: str | None = None
    last_attempt_at: float | None = None  # monotonic clock
    last_delay: float | None = None  # the wait chosen after the last failed send
    waiting_until: float | None = None  # monotonic clock, while backing off
    identity_error: str | None = None


class Reporter:
    def __init__(
        self,
        settings: ReporterSettings,
        identity: IdentityProvider,
        *,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self.identity = identity
        self.outbox = Outbox(settings.directory, settings.limits)
        self.stats = ReporterStats()
        self._url = reports_url(settings.server_url)
        self._rand = rand
        # report() may come from another thread (a logging handler); the sender runs on
        # the event loop. The lock is held only around the outbox, never across a send.
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._retry_logged: float | None = None

    # -- the API the keeper's parts call ---------------------------------------------------

    def report(
        self,
        kind: ReportKind,
        message: str,
        *,
        process: str,
        version: str,
        target_version: str | None = None,
        at: float | None = None,
        **details: Any,
    ) -> str | None:
        """Queue one report (durably, before returning) and return its report_id, or None
        if it could not be queued (invalid fields: logged as an error). Never raises and
        never waits for the network."""
        try:
            report_id = new_report_id()
            record = make_record(
                kind,
                message,
                process=process,
                version=version,
                target_version=target_version,
                at=time.time() if at is None else at,
                report_id=report_id,
                node_id=self._node_id_now(),
                details=details,
            )
            with self._lock:
                outcome = self.outbox.put(record)
        except ValueError as exc:  # a field the server would refuse: waiting cannot help
            log.error("cannot queue a %s report (%s): %s", kind, message[:200], exc)
            return None
        except Exception:
            # The keeper's own bug. The caller is in the middle of keeping the node alive
            # and must not be stopped by a report.
            log.exception("cannot queue a %s report (%s)", kind, message[:200])
            return None
        if outcome == "dropped":
            return None
        self._poke()
        return report_id

    def heartbeat(self, process: str, version: str) -> str | None:
        """The version this node runs now; the control plane counts nodes per version."""
        return self.report(
            "heartbeat", f"{process} runs {version}", process=process, version=version
        )

    async def run(self) -> None:
        """Send queued reports until cancelled. Never returns on its own and never raises
        (but CancelledError)."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        timeout = httpx.Timeout(self.settings.request_timeout)
        async with httpx.AsyncClient(
            timeout=timeout, follow_redirects=False, verify=self._tls_verify()
        ) as client:
            while True:
                self._wake.clear()
                try:
                    delay = await self._step(client)
                except Exception as exc:  # a bug or a disk error: log, wait, go on
                    log.exception("report sender: unexpected error")
                    self.stats.last_error = f"{type(exc).__name__}: {exc}"
                    self.stats.failures_in_row += 1
                    delay = retry_delay(
                        self.stats.failures_in_row, None, self.settings.timing, self._rand()
                    )
                if delay is None:
                    await self._wake.wait()
                elif delay > 0:
                    self.stats.waiting_until = time.monotonic() + delay
                    await asyncio.sleep(delay)
                    self.stats.waiting_until = None

    async def drain(self, timeout: float) -> bool:
        """Wait until nothing is queued (True) or ``timeout`` passes (False); for a
        keeper that is about to stop, and for tests. ``run()`` must be running."""
        deadline = time.monotonic() + timeout
        while len(self.outbox):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    def snapshot(self) -> dict[str, Any]:
        """JSON-able state for the keeper's status API."""
        st = self.stats
        return {
            "queued": len(self.outbox),
            "held_in_memory": self.outbox.held,
            "dropped_untold": self.outbox.dropped,
            "sent": st.sent,
            "duplicates": st.duplicates,
            "rejected": st.rejected,
            "failures_in_row": st.failures_in_row,
            "last_status": st.last_status,
            "last_error": st.last_error,
            "retry_in": None
            if st.waiting_until is None
            else max(0.0, st.waiting_until - time.monotonic()),
            "identity_error": st.identity_error,
        }

    # -- one step of the sender ------------------------------------------------------------

    async def _step(self, client: httpx.AsyncClient) -> float | None:
        """Send the oldest report; returns how long to wait before the next step (None:
        until a report is queued)."""
        with self._lock:
            item = self.outbox.next()
        if item is None:
            return None
        try:
            identity = self.identity.get()
        except IdentityError as exc:
            self._identity_missing(str(exc))
            with self._lock:
                self.outbox.release(item)
            return self.settings.identity_retry_seconds
        if self.stats.identity_error is not None:
            log.info("node identity readable again (%s); sending reports", identity.node_id_text)
            self.stats.identity_error = None
        try:
            report = build_report(item.record, identity.node_id_text, item.dropped)
        except RecordError as exc:
            self._reject(item, Answer(None, None, str(exc)))
            return 0.0
        self.stats.attempts += 1
        self.stats.last_attempt_at = time.monotonic()
        answer = await post_report(
            client, self._url, report, identity.key, deadline=self.settings.request_deadline
        )
        self.stats.last_status = answer.status
        verdict = Verdict.RETRY if answer.status is None else classify_status(answer.status)
        if verdict is Verdict.DELIVERED:
            with self._lock:
                self.outbox.delivered(item)
            if answer.status == 200:
                self.stats.duplicates += 1
            else:
                self.stats.sent += 1
            if self.stats.failures_in_row:
                log.info("control plane takes reports again (%d still queued)", len(self.outbox))
            self.stats.failures_in_row = 0
            self.stats.last_error = None
            return 0.0
        if verdict is Verdict.REJECTED:
            self._reject(item, answer)
            return 0.0
        return self._retry_later(item, answer)

    def _retry_later(self, item: Item, answer: Answer) -> float:
        with self._lock:
            self.outbox.release(item)
        st = self.stats
        st.failures_in_row += 1
        what = f"HTTP {answer.status}" if answer.status is not None else "no answer"
        st.last_error = f"{what}: {answer.detail}" if answer.detail else what
        retry_after = parse_retry_after(answer.retry_after, time.time())
        delay = retry_delay(st.failures_in_row, retry_after, self.settings.timing, self._rand())
        st.last_delay = delay
        now = time.monotonic()
        first = st.failures_in_row == 1
        if first or self._retry_logged is None or now - self._retry_logged >= RETRY_LOG_SECONDS:
            self._retry_logged = now
            log.warning(
                "cannot send reports to %s (%s); %d queued, next try in %.3g s",
                self._url,
                st.last_error,
                len(self.outbox),
                delay,
            )
        else:
            log.debug("report send failed (%s); next try in %.3g s", st.last_error, delay)
        return delay

    def _reject(self, item: Item, answer: Answer) -> None:
        what = f"HTTP {answer.status}" if answer.status is not None else "not sendable"
        kind = item.record.get("report", {}).get("kind")
        report_id = item.record.get("report", {}).get("report_id")
        log.error(
            "the control plane can never accept report %s (%s): %s: %s; moved aside to %s",
            report_id,
            kind,
            what,
            answer.detail,
            self.outbox.directory / "rejected",
        )
        with self._lock:
            self.outbox.rejected(item, answer.status, f"{what}: {answer.detail}")
        self.stats.rejected += 1

    # -- helpers ---------------------------------------------------------------------------

    def _tls_verify(self) -> ssl.SSLContext | bool:
        """The configured CA bundle, or the system's when there is none or it cannot be
        loaded (then a control plane behind a private CA fails TLS and reports wait, which
        is safe; the log says why)."""
        bundle = self.settings.ca_bundle
        if not bundle:
            return True
        try:
            return ssl.create_default_context(cafile=bundle)
        except (OSError, ssl.SSLError) as exc:
            log.error("cannot load the CA bundle %s (%s); using the system's CAs", bundle, exc)
            return True

    def _identity_missing(self, error: str) -> None:
        if self.stats.identity_error != error:
            log.error("cannot sign reports: %s; reports wait in the queue until it can", error)
        self.stats.identity_error = error

    def _node_id_now(self) -> str | None:
        try:
            return self.identity.node_id_text()
        except Exception:
            return None

    def _poke(self) -> None:
        """Wake the sender: a report is waiting. Safe from any thread."""
        loop, wake = self._loop, self._wake
        if loop is None or wake is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            wake.set()
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(wake.set)
