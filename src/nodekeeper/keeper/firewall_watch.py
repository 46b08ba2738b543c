"""The keeper's firewall check: at start, then every ``firewall.interval_seconds``.

Each check runs ``nodekeeper.firewall.check.run_check`` in a daemon thread of its own,
awaited with a deadline: the check kills its own child processes at
``firewall.timeout_seconds`` (the COM probe on Windows, the tools on Linux), and should
that ever fail, the keeper stops waiting a few seconds later and says so. A thread that
still hangs never holds the keeper: it is a daemon, so neither a stop nor the end of the
process waits for it, and no second check starts beside it.

The node's port and program are looked at every minute (cheap: a config file and the
supervisor's command); when they change (the node was set up, or updated to a version
in a new directory) the check runs at once instead of at the next interval.

The latest verdict is in the status API (``firewall``), and a ``blocked`` verdict goes to
the error index once per change: the same blocked state an hour later is not a new
entry, a different fix is, and so is blocked again after the port was allowed. What was
last recorded survives a keeper restart (``state/firewall.json``). Reports: none, see
decision 065.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from nodekeeper.durable import write_durably
from nodekeeper.firewall.target import Target, resolve_target
from nodekeeper.firewall.verdict import Verdict, unknown_verdict
from nodekeeper.keeper.config import KeeperConfig

if TYPE_CHECKING:
    from nodekeeper.updater.interfaces import ErrorSink

log = logging.getLogger("nodekeeper.keeper.firewall")

STATE_FILE = "firewall.json"
# How often the port and program are looked at for a change.
TARGET_POLL_SECONDS = 60.0
# How long past its own timeout a check may take before the keeper stops waiting.
GRACE_SECONDS = 5.0


def firewall_target(config: KeeperConfig, program: str | None) -> Target:
    """The node's port and program for the check: ``[firewall]`` keys first."""
    where = f" in {config.source}" if config.source else ""
    configured = config.firewall.program
    return resolve_target(
        config_dir=config.node_config_path(),
        port=config.firewall.port,
        program=config.expand(configured) if configured else program,
        port_key=f"firewall.port{where}",
    )


def recorded_key(verdict: Verdict) -> list[Any]:
    """The JSON form of ``Verdict.key()``, as ``state/firewall.json`` keeps it."""
    return json.loads(json.dumps(verdict.key()))


def index_update(recorded: list[Any] | None, verdict: Verdict) -> tuple[list[Any] | None, bool]:
    """What the error index gets (pure): returns the key to remember and whether this
    verdict is a new entry. Blocked → an entry when it differs from the one recorded;
    allowed → forget it (blocked again later is news); unknown → no change (a failed
    look says nothing about the port)."""
    if verdict.status == "blocked":
        key = recorded_key(verdict)
        return key, key != recorded
    if verdict.status == "allowed":
        return None, False
    return recorded, False


def blocked_message(verdict: Verdict) -> str:
    """One line for the error index and the log: what is blocked, why, and the fix (the
    same line `nodekeeper status` shows among its problems)."""
    from nodekeeper.keeper.status_view import firewall_problem

    line = firewall_problem({"last": verdict.as_dict()})
    assert line is not None, "only a blocked verdict has a message"
    return line


class FirewallWatch:
    def __init__(
        self,
        config: KeeperConfig,
        program: Callable[[], str | None],
        errors: ErrorSink | None,
        *,
        poll_seconds: float = TARGET_POLL_SECONDS,
    ) -> None:
        self.config = config
        self.poll_seconds = poll_seconds
        self.settings = config.firewall
        self.program = program
        self.errors = errors
        self.last: Verdict | None = None
        self.last_target: Target | None = None
        self._state_path = config.state_path() / STATE_FILE
        self._recorded = self._load()
        self._running_since: float | None = None  # monotonic start of the check in flight
        self._next_at: float | None = None  # monotonic
        self._lock = threading.Lock()

    # -- the status ----------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        now = time.monotonic()
        target = self.last_target
        return {
            "enabled": True,
            "checking": self._running_since is not None,
            "interval_seconds": self.settings.interval_seconds,
            "next_check_in": max(0.0, self._next_at - now) if self._next_at else None,
            "target": None
            if target is None
            else {
                "port": target.port,
                "port_source": target.port_source,
                "program": target.program,
            },
            "last": self.last.as_dict() if self.last else None,
        }

    # -- the loop ------------------------------------------------------------------------

    async def run(self) -> None:
        """Check at once, then at every interval and whenever the target changes; runs
        until cancelled (the keeper's stop)."""
        poll = min(self.poll_seconds, self.settings.interval_seconds)
        while True:
            target = self.target()
            now = time.monotonic()
            if self._next_at is None or now >= self._next_at or target != self.last_target:
                await self.check(target)
                self._next_at = time.monotonic() + self.settings.interval_seconds
            wait = min(poll, max(0.0, self._next_at - time.monotonic()))
            await asyncio.sleep(wait)

    def target(self) -> Target:
        try:
            program = self.program()
        except Exception:  # the supervisor's command is plain data; never let it stop us
            log.exception("cannot tell the node's program for the firewall check")
            program = None
        return firewall_target(self.config, program)

    async def check(self, target: Target) -> Verdict:
        """One check with a deadline; records and returns its verdict."""
        verdict = await self._run_in_thread(target)
        previous, self.last, self.last_target = self.last, verdict, target
        self._after(previous, verdict)
        return verdict

    async def _run_in_thread(self, target: Target) -> Verdict:
        timeout = self.settings.timeout_seconds
        with self._lock:
            started = self._running_since
            if started is None:
                self._running_since = time.monotonic()
        if started is not None:
            return self._unknown(
                target,
                f"the previous check has not finished after {time.monotonic() - started:.0f} s "
                "(a firewall query hangs); no second one was started",
            )
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Verdict] = loop.create_future()

        def settle(verdict: Verdict) -> None:
            if not future.done():
                future.set_result(verdict)

        def work() -> None:
            try:
                from nodekeeper.firewall.check import run_check

                verdict = run_check(target, timeout=timeout)
            except BaseException as exc:  # run_check does not raise; this is the backstop
                verdict = self._unknown(target, f"the check failed: {exc!r}")
            finally:
                with self._lock:
                    self._running_since = None
            # A RuntimeError: the keeper's loop is gone, it stopped meanwhile.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, verdict)

        threading.Thread(target=work, name="firewall-check", daemon=True).start()
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout + GRACE_SECONDS)
        except TimeoutError:
            return self._unknown(
                target, f"the check did not finish within {timeout + GRACE_SECONDS:g} s"
            )

    def _unknown(self, target: Target, why: str) -> Verdict:
        return unknown_verdict(
            why, port=target.port, program=target.program, checked_at=time.time()
        )

    # -- what a verdict changes ------------------------------------------------------------

    def _after(self, previous: Verdict | None, verdict: Verdict) -> None:
        recorded, new_entry = index_update(self._recorded, verdict)
        if new_entry:
            message = blocked_message(verdict)
            log.warning(message)  # WARNING: the log handler copies ERROR lines to the index
            self._record(message, verdict)
        elif previous is None or previous.key() != verdict.key():
            reasons = "; ".join(f"{p.protocol.upper()}: {p.reason}" for p in verdict.protocols)
            log.info("firewall: %s; %s", verdict.summary(), reasons)
        if recorded != self._recorded:
            self._recorded = recorded
            self._save()

    def _record(self, message: str, verdict: Verdict) -> None:
        if self.errors is None:
            return
        try:
            self.errors.record(
                "keeper",
                logging.ERROR,
                message,
                reason="firewall-blocked",
                port=verdict.port,
                firewall=verdict.firewall,
                protocols={p.protocol: p.status for p in verdict.protocols},
                fix=list(verdict.fix()),
            )
        except Exception:
            log.exception("cannot write the error index")

    def _load(self) -> list[Any] | None:
        try:
            data = json.loads(self._state_path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("cannot read %s (%s); starting afresh", self._state_path, exc)
            return None
        key = data.get("recorded") if isinstance(data, dict) else None
        return key if isinstance(key, list) else None

    def _save(self) -> None:
        try:
            self._state_path.parent.mkdir(parents=True, exist_ok=True)
            write_durably(self._state_path, json.dumps({"recorded": self._recorded}).encode())
        except OSError as exc:
            # Only costs a repeated error-index entry after a restart.
            log.warning("cannot write %s: %s", self._state_path, exc)
