"""The supervisor: the asyncio shell that runs the node and feeds ``policy`` its events.

One run of the node is four concurrent waits: the exit (seen the instant it happens),
the probe loop (may decide "hung"), the resource sampler (may decide "memory"), and the
keeper's own shutdown. Whichever finishes first decides how the run ends; the decision
of what comes next is ``policy.decide_after_exit``. Everything else here is plumbing.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psutil

from nodekeeper.keeper import loopback
from nodekeeper.keeper.config import ConfigError, KeeperConfig
from nodekeeper.keeper.leftover import TreeRecord
from nodekeeper.keeper.output import LineSink, LoggingSink, pump
from nodekeeper.keeper.policy import (
    CrashLoopDetector,
    ProbeTracker,
    ProbeVerdict,
    RestartBackoff,
    SoftLimitCounter,
    backoff_delay,
    cpu_percent,
    decide_after_exit,
)
from nodekeeper.keeper.probes import HttpProbe, Probe, ProcessProbe, TcpProbe
from nodekeeper.keeper.states import Event, State, transition
from nodekeeper.keeper.status import ExitInfo, NodeStatus, PulseInfo, directory_bytes
from nodekeeper.keeper.status import as_dict as status_dict
from nodekeeper.platform.base import (
    AdoptionRefused,
    LaunchSpec,
    Platform,
    ProcessHandle,
    ResourceLimits,
)

if TYPE_CHECKING:  # a keeper without [update] loads no updater module
    from nodekeeper.updater.interfaces import ErrorSink

log = logging.getLogger("nodekeeper.keeper")

# While the node has not yet answered its first probe, probe this often (at most), so the
# status turns "running" promptly after a start without probing a healthy node more.
STARTUP_POLL_SECONDS = 1.0
# How long the output pipes may stay open after the tree is gone (they close at once
# unless something outside the tree inherited them).
PIPE_DRAIN_SECONDS = 2.0
IDENTITY_FILE = "node.json"
# Node output lines kept per run, so the updater can tell why a new version failed
# (e.g. "database or disk is full") without reading the log files back.
OUTPUT_TAIL_LINES = 40


# Events the supervisor records in the error index itself (with structured fields) are
# logged at WARNING in keeper.log: the keeper's log handler copies every ERROR line into
# the index too, and the tray app should see each event once.


def resolve_cores(setting: int | list[int] | None) -> tuple[int, ...] | None:
    """The core numbers for ``limits.cpu_cores``: a count takes the first N cores this
    process may use; a list must name cores this process may use."""
    if setting is None:
        return None
    allowed = sorted(psutil.Process().cpu_affinity() or range(os.cpu_count() or 1))
    if isinstance(setting, int):
        if setting > len(allowed):
            raise ConfigError(
                f"limits.cpu_cores: {setting} cores asked for, only {len(allowed)} available "
                f"(cores {allowed})"
            )
        return tuple(allowed[:setting])
    unknown = sorted(set(setting) - set(allowed))
    if unknown:
        raise ConfigError(
            f"limits.cpu_cores: cores {unknown} do not exist or are not usable; allowed: {allowed}"
        )
    return tuple(sorted(set(setting)))


def make_probe(config: KeeperConfig) -> Probe:
    if config.probe.kind == "http":
        return HttpProbe(config.probe.url, config.probe.timeout_seconds)
    if config.probe.kind == "tcp":
        host, port = config.tcp_probe_host_port()
        return TcpProbe(host, port, config.probe.timeout_seconds)
    return ProcessProbe()


class _TailSink:
    """Passes node output on and keeps the last lines of the current run."""

    def __init__(self, inner: LineSink, tail: deque[str]) -> None:
        self.inner = inner
        self.tail = tail

    def write(self, line: str, stream: str) -> None:
        self.tail.append(line)
        self.inner.write(line, stream)

    def close(self) -> None:
        self.inner.close()


@dataclass(frozen=True)
class ExitView:
    """One exit of the node as the updater sees it: ``number`` counts every exit since
    the keeper started; ``output`` is the last lines the run printed."""

    number: int
    code: int | None
    reason: str
    detail: str
    output: tuple[str, ...]
    generation: int  # the command generation of the run that exited


@dataclass(frozen=True)
class RunView:
    """What the updater reads to judge a run (a copy; the supervisor keeps going).

    ``spawns`` and ``exits`` only ever grow, so "did the node exit since the switch" is
    ``exits > exits_at_switch`` even when the supervisor restarted it in between."""

    generation: int  # which set_command/switch call the current run's command came from
    spawns: int
    exits: int
    state: str
    healthy_since_mono: float | None
    pulse_ok: bool | None
    last_ok_mono: float | None  # when this run's probe last passed
    pulse: dict[str, Any] | None
    recent_exits: tuple[ExitView, ...]
    # The keeper holds the node stopped on purpose (see Supervisor.hold): an update must
    # not switch now, nothing it starts would run.
    held: bool = False


@dataclass(frozen=True)
class Hold:
    """Why the keeper keeps the node stopped on purpose, since when (wall clock), and what
    the operator can do about it (decision 070)."""

    reason: str
    fix: str
    since: float

    def as_dict(self) -> dict[str, Any]:
        return {"reason": self.reason, "since": self.since, "fix": self.fix}


def describe_exit(code: int | None) -> str:
    if code is None:
        return "could not be started"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


class Supervisor:
    def __init__(
        self,
        config: KeeperConfig,
        platform: Platform,
        sink: LineSink | None = None,
        errors: ErrorSink | None = None,
    ) -> None:
        self.config = config
        self.platform = platform
        self.output_tail: deque[str] = deque(maxlen=OUTPUT_TAIL_LINES)
        self.sink = _TailSink(sink or LoggingSink(), self.output_tail)
        self.errors = errors
        # The command the node runs: node.command unless the updater sets one (None:
        # nothing installed yet, so nothing runs until the updater switches to a version).
        self._argv: list[str] | None = config.node_argv()
        self._generation = 0
        self._run_generation = -1
        self._switch: asyncio.Event | None = None
        self._spawns = 0
        self._last_ok_mono: float | None = None
        self._exits = 0
        self._exit_log: deque[ExitView] = deque(maxlen=OUTPUT_TAIL_LINES)
        self._fresh_counters()
        self.cores = resolve_cores(config.limits.cpu_cores)
        self.limits = ResourceLimits(
            memory_hard_bytes=config.limits.memory_hard,
            cpu_rate_percent=config.limits.cpu_rate_percent,
            cpu_cores=self.cores,
            below_normal_priority=config.limits.below_normal_priority,
        )
        self.probe = make_probe(config)
        self.status = NodeStatus(limits=platform.describe_limits(self.limits))
        self._shutdown: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested = False
        # A keeper hand-over: the run ends by detaching from the node, not stopping it,
        # where the platform can leave it running (decision 063).
        self._handing_over = False
        self._needs_setup_logged: float | None = None
        self._unreleased: list[ProcessHandle] = []
        self._record = TreeRecord(config.state_path() / IDENTITY_FILE)
        # Why the current run is ending, beyond its exit code (shown in last_exit.detail).
        self._exit_detail = ""
        # Set (and replaced by a fresh one) at every change that ``observe`` shows: a
        # state event, a probe result, an exit, a shutdown request. Waiters (``switch``,
        # the updater's probation) sleep on it instead of polling.
        self._change = asyncio.Event()
        self._hold: Hold | None = None

    # -- public ------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The status as JSON-able data (the status API's body)."""
        view = {
            "probe_kind": self.probe.kind,
            "memory_soft": self.config.limits.memory_soft,
            "memory_hard": self.config.limits.memory_hard,
            "cpu_rate_percent": self.config.limits.cpu_rate_percent,
            "cpu_cores": list(self.cores) if self.cores is not None else None,
            "consecutive_failures": self.backoff.failures,
            # What the next crash would wait (the backoff as it stands now).
            "restart_delay_seconds": backoff_delay(
                self.backoff.failures, self.backoff.initial, self.backoff.maximum
            ),
            "logs": {
                "directory": str(self.config.logs_path()),
                "bytes": directory_bytes(self.config.logs_path()),
                "cap_bytes": self.config.logs.total_cap,
            },
        }
        data = status_dict(self.status, view, self.platform.name)
        data["hold"] = self._hold.as_dict() if self._hold is not None else None
        return data

    def set_command(self, argv: list[str] | None) -> None:
        """The command to run from the next start on (before :meth:`run`, or to change
        what a crash restart starts). None: run nothing until :meth:`switch`."""
        self._argv = list(argv) if argv is not None else None
        self._generation += 1

    def next_change(self) -> asyncio.Event:
        """An event set at the next change of what :meth:`observe` shows (a state
        event, a probe result, an exit) or a shutdown request. Take it *before*
        observing, so a change between the look and the wait is not missed."""
        return self._change

    def _changed(self) -> None:
        event, self._change = self._change, asyncio.Event()
        event.set()

    @property
    def command(self) -> list[str] | None:
        return list(self._argv) if self._argv is not None else None

    @property
    def command_generation(self) -> int:
        """Counts set_command/switch calls: exits of runs of an older generation are not
        the current command's."""
        return self._generation

    async def switch(self, argv: list[str]) -> int:
        """Run ``argv`` now: stop the current run gracefully (kill after the stop
        timeout), then start ``argv`` at once, without backoff; also cuts a backoff or
        setup-recheck wait short. Returns once the new command has been started (or the
        keeper is shutting down); returns the new command's generation. Restart backoff
        and crash-loop count start afresh: they were about the old version.

        During a :meth:`hold` nothing starts: the command is recorded (it is what runs at
        the release) and this returns at once, so an update never waits for the operator
        to plug a disk back in; ``observe().held`` tells the caller (the update machine
        checks it before switching, decision 070)."""
        self.set_command(argv)
        generation = self._generation
        if self._switch is not None:
            self._switch.set()
        while self._run_generation < generation and not self._stop_requested and self._hold is None:
            await self.next_change().wait()  # the new run's SPAWNED event, a shutdown, a hold
        return generation

    @property
    def held(self) -> Hold | None:
        return self._hold

    def hold(self, reason: str, fix: str) -> None:
        """Stop the node gracefully (as a switch does: kill after the stop timeout) and
        start nothing until :meth:`release`; e.g. its storage directory is gone and every
        audit it answered now would fail (decision 070). Holding again while held only
        updates ``reason`` and ``fix``; ``since`` stays the first hold's."""
        since = self._hold.since if self._hold is not None else time.time()
        self._hold = Hold(reason, fix, since)
        if self._switch is not None:
            self._switch.set()  # ends the current run, or cuts a backoff wait short
        self._changed()

    def release(self) -> None:
        """End the hold: the node starts at once (without backoff), with the newest
        command. Nothing happens when nothing is held."""
        if self._hold is None:
            return
        self._hold = None
        if self._switch is not None:
            self._switch.set()  # wakes run() from its wait for the release
        self._changed()

    def observe(self) -> RunView:
        st = self.status
        pulse = st.last_pulse
        return RunView(
            generation=self._run_generation,
            spawns=self._spawns,
            exits=self._exits,
            state=st.state.value,
            healthy_since_mono=st.healthy_since_mono,
            pulse_ok=pulse.ok if pulse else None,
            last_ok_mono=self._last_ok_mono,
            pulse=dict(pulse.data) if pulse and pulse.data else None,
            recent_exits=tuple(self._exit_log),
            held=self._hold is not None,
        )

    def request_shutdown(self) -> None:
        """Stop the node gracefully and make :meth:`run` return. Safe from any thread (the
        Windows service's stop handler runs on its own) and from signal handlers."""
        self._stop_requested = True
        if self._shutdown is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._shutdown.set)
            self._loop.call_soon_threadsafe(self._changed)

    def request_handover(self) -> None:
        """Like :meth:`request_shutdown`, for a keeper handing over to its next version:
        a node that can outlive this keeper (under a node shim) is left running for the
        next keeper to take over; any other node is stopped as usual."""
        self._handing_over = True
        self.request_shutdown()

    async def run(self) -> None:
        """Supervise until :meth:`request_shutdown` (the node is stopped when it returns)
        or :meth:`request_handover` (it may be left running for the next keeper)."""
        self._shutdown = asyncio.Event()
        self._switch = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        if self._stop_requested:  # asked before run() began: start nothing
            self._shutdown.set()
        adopted = await self._adopt_or_clear()
        while not self._shutdown.is_set() or adopted is not None:
            # Cleared before the command is read: a switch() after this point ends the run
            # it is about to start, so the newest command always wins.
            self._switch.clear()
            if self._hold is not None:
                if adopted is None:
                    await self._sleep(math.inf)  # until release() (or a shutdown)
                    continue
                self._switch.set()  # a node taken over while held is stopped at once
            if self._argv is None and adopted is None:
                await self._sleep(math.inf)
                continue
            code, reason = await self._run_once(adopted)
            adopted = None
            self._release_all()
            if reason == "handed over":
                break
            if reason == "stopped":
                self._record_exit(ExitInfo(code, "stopped", time.time(), describe_exit(code)))
                break
            if reason == "switch":
                self._after_switch(code)
                continue
            if reason == "hold":
                self._after_hold(code)
                continue
            delay = self._after_exit(code, reason)
            await self._sleep(delay)
            self.status.next_start_at = None
        if self.status.state is not State.STOPPED:
            self._fire(Event.SHUT_DOWN)
        self.status.pid = None
        for _ in range(100):  # up to a second for the kernel to empty the last cgroup
            self._release_all()
            if not self._unreleased:
                break
            await asyncio.sleep(0.01)

    # -- one run -------------------------------------------------------------------------

    async def _adopt_or_clear(self) -> ProcessHandle | None:
        """Take over the node the previous keeper handed over or left when it died
        (decision 063); else remove whatever it left (decision 011). A node that cannot
        be taken over is restarted, and the log and the status say why."""
        identity = self._record.read()
        if identity is None:
            return None
        if identity.get("shim") is not None:
            try:
                handle = await self.platform.adopt(identity)
            except AdoptionRefused as exc:
                message = f"cannot take over the running node, restarting it: {exc}"
                log.warning(message)
                self.status.adoption = f"restarted: {exc}"
            else:
                log.info("took over the running node: pid %d", handle.pid)
                self.status.adoption = "adopted"
                return handle
        self._record.remove_leftover(self.platform)
        return None

    async def _run_once(
        self, adopted: ProcessHandle | None = None
    ) -> tuple[int | None, str | None]:
        """Start the node (or take over ``adopted``) and supervise it until it exits;
        returns (exit code, reason) with reason None for an exit the keeper did not ask
        for, and "handed over" when it was left running for the next keeper."""
        assert self._shutdown is not None and self._switch is not None
        spec = self._spec()
        self._run_generation = self._generation
        self.output_tail.clear()
        self._spawns += 1
        self._last_ok_mono = None
        try:
            handle = adopted if adopted is not None else await self.platform.start(spec)
        except OSError as exc:
            # WARNING, not ERROR: _after_exit indexes this failure itself (see ErrorSink).
            log.warning("cannot start the node (%s): %s", spec.argv[0], exc)
            self._fire(Event.SPAWNED)
            self.status.started_mono = time.monotonic()
            self.status.healthy_since_mono = None
            self._exit_detail = str(exc)
            return None, None
        now = time.monotonic()
        st = self.status
        st.pid, st.started_at, st.started_mono = handle.pid, time.time(), now
        st.healthy_since_mono = None
        st.limits = handle.limits
        st.tree = handle.identity()
        st.probe_failures = 0
        st.memory_bytes = st.cpu_percent = st.processes = None
        self._exit_detail = ""
        self._fire(Event.SPAWNED)
        self._record.write(handle)
        if adopted is None:
            log.info("node started: pid %d (%s)", handle.pid, " ".join(spec.argv))

        pumps = [
            asyncio.create_task(pump(handle.stdout, "stdout", self.sink)),
            asyncio.create_task(pump(handle.stderr, "stderr", self.sink)),
        ]
        exited = asyncio.create_task(handle.wait())
        watchers = {
            asyncio.create_task(self._probe_loop(handle)),
            asyncio.create_task(self._sample_loop(handle)),
        }
        shutdown = asyncio.create_task(self._shutdown.wait())
        switch = asyncio.create_task(self._switch.wait())
        done, _ = await asyncio.wait(
            {exited, shutdown, switch, *watchers}, return_when=asyncio.FIRST_COMPLETED
        )
        # Probing and sampling end first: nothing may judge a node that is being stopped.
        for task in (shutdown, switch, *watchers):
            task.cancel()
        reason: str | None = None
        handing_over = exited not in done and shutdown in done and self._handing_over
        if handing_over and await asyncio.to_thread(handle.detach):
            # Every line the node wrote up to the detach goes to this keeper's log; the
            # rest waits in the shim for the next keeper. The node runs on.
            await asyncio.wait(pumps, timeout=PIPE_DRAIN_SECONDS)
            exited.cancel()
            log.info("left the node running for the next keeper: pid %d", handle.pid)
            return None, "handed over"
        if exited not in done:
            if shutdown in done:
                reason = "stopped"
            elif switch in done:
                # The switch event also carries hold(): what ends the run decides the name.
                reason = "hold" if self._hold is not None else "switch"
            else:
                reason = next(t for t in done if t in watchers).result()
            await self._stop(handle, exited, reason or "stopped")
        code = await exited
        # Whatever the node left behind (helpers that ignored the stop, daemons) goes too.
        self.platform.kill_tree(handle)
        _, pending = await asyncio.wait(pumps, timeout=PIPE_DRAIN_SECONDS)
        for task in pending:
            task.cancel()
        self._unreleased.append(handle)
        self._record.clear()
        return code, reason

    async def _stop(self, handle: ProcessHandle, exited: asyncio.Task[int], reason: str) -> None:
        """Graceful stop, then after the stop timeout a kill of the whole tree."""
        if self.status.state is not State.HUNG:
            self._fire(Event.STOP)
        timeout = self.config.stop.timeout_seconds
        deadline = time.monotonic() + timeout
        how = await self._graceful(handle, timeout)
        why = {
            "stopped": "keeper shutdown",
            "hung": "not answering",
            "memory": "soft limit",
            "switch": "switching to another version",
            "hold": f"held: {self._hold.reason}" if self._hold else "held",
        }
        log.info(
            "stopping the node (%s) via %s; kill after %g s", why.get(reason, reason), how, timeout
        )
        try:
            await asyncio.wait_for(asyncio.shield(exited), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            message = f"node did not stop within {timeout:g} s; killing its process tree"
            log.warning(message)
            self._record_error(message, reason="stop-timeout", level=logging.WARNING)
            self._exit_detail = f"did not stop within {timeout:g} s; tree killed"
            self.platform.kill_tree(handle)

    async def _graceful(self, handle: ProcessHandle, timeout: float) -> str:
        url = self.config.stop.shutdown_url
        if url:
            try:
                token = self.config.shutdown_token_path().read_text().strip()
            except OSError:
                token = ""
            if token:
                try:
                    response = await loopback.request(
                        "POST",
                        url,
                        headers={"Authorization": f"Bearer {token}"},
                        timeout=min(5.0, timeout / 2),
                    )
                    if 200 <= response.status < 300:
                        return "the shutdown endpoint"
                    log.warning("shutdown endpoint answered HTTP %d", response.status)
                except loopback.HTTPError as exc:
                    log.warning("shutdown endpoint failed: %s", exc)
        if self.platform.request_stop(handle):
            return self.platform.graceful_signal_name
        return "nothing (no graceful signal on this platform)"

    async def _probe_loop(self, handle: ProcessHandle) -> str:
        cfg = self.config.probe
        tracker = ProbeTracker(cfg.failure_threshold, cfg.start_grace_seconds, time.monotonic())
        next_at = time.monotonic()
        if self.probe.kind != "process":
            next_at += min(cfg.interval_seconds, STARTUP_POLL_SECONDS)
        while True:
            # Fixed-rate schedule: a probe that times out does not push the next one back,
            # so a hang is seen within interval × threshold + timeout.
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            result = await self.probe.check()
            now = time.monotonic()
            if handle.returncode is not None:
                await asyncio.Event().wait()  # the exit wins; this task is cancelled
            interval = (
                cfg.interval_seconds
                if tracker.ever_healthy
                else min(cfg.interval_seconds, STARTUP_POLL_SECONDS)
            )
            next_at = max(next_at + interval, now)
            verdict = tracker.observe(result.ok, now)
            previous = self.status.last_pulse
            self.status.last_pulse = PulseInfo(
                result.ok,
                time.time(),
                result.seconds,
                result.detail,
                result.pulse if result.ok else (previous.data if previous else None),
            )
            self.status.probe_failures = tracker.failures
            if result.ok:
                self._last_ok_mono = now
            self._changed()  # a new pulse: the updater's probation judges it
            if verdict is ProbeVerdict.HEALTHY:
                self._on_healthy(now)
            elif verdict is ProbeVerdict.HUNG:
                message = (
                    f"node is not answering its {self.probe.kind} probe: "
                    f"{tracker.failures} failures in a row ({result.detail}); restarting it"
                )
                log.warning(message)
                self._record_error(message, reason="hung")
                self._exit_detail = f"probe failed {tracker.failures} times: {result.detail}"
                self._fire(Event.PROBE_HUNG)
                return "hung"
            elif verdict is ProbeVerdict.FAILING:
                log.warning(
                    "probe failed (%d/%d): %s",
                    tracker.failures,
                    cfg.failure_threshold,
                    result.detail,
                )

    def _on_healthy(self, now: float) -> None:
        st = self.status
        if st.state is State.STARTING:
            self._fire(Event.PROBE_OK)
            st.healthy_since_mono = now
            log.info("node is healthy")
        if st.healthy_since_mono is not None:
            self.backoff.on_healthy(now - st.healthy_since_mono)
        st.crash_loop = self.crash_loop.looping(now)
        st.recent_failures = self.crash_loop.recent(now)

    async def _sample_loop(self, handle: ProcessHandle) -> str:
        cfg = self.config.limits
        soft = SoftLimitCounter(cfg.memory_soft, cfg.memory_soft_readings)
        previous: tuple[float, float] | None = None
        while True:
            usage = self.platform.usage(handle)
            now = time.monotonic()
            if usage is not None:
                st = self.status
                st.memory_bytes, st.memory_kind = usage.memory_bytes, usage.memory_kind
                st.processes = usage.processes
                if previous is not None:
                    st.cpu_percent = round(
                        cpu_percent(previous[0], previous[1], usage.cpu_seconds, now), 2
                    )
                previous = (usage.cpu_seconds, now)
                if soft.observe(usage.memory_bytes):
                    message = (
                        f"node memory {usage.memory_bytes} bytes ({usage.memory_kind}) was over "
                        f"the soft limit {cfg.memory_soft} for {cfg.memory_soft_readings} "
                        "readings in a row; restarting it gracefully"
                    )
                    log.warning(message)
                    self._record_error(message, reason="memory", level=logging.WARNING)
                    st.soft_limit_restarts += 1
                    self._exit_detail = f"soft memory limit {cfg.memory_soft} exceeded"
                    return "memory"
            await asyncio.sleep(cfg.sample_interval_seconds)

    # -- between runs --------------------------------------------------------------------

    def _after_switch(self, code: int | None) -> None:
        st = self.status
        self._record_exit(ExitInfo(code, "switched", time.time(), describe_exit(code)))
        st.pid = None
        st.started_mono = st.healthy_since_mono = None
        st.memory_bytes = st.cpu_percent = st.processes = None
        st.crash_loop = False
        st.recent_failures = 0
        self._fresh_counters()
        self._needs_setup_logged = None
        self._fire(Event.EXITED)
        log.info("node stopped for a version switch; starting the new command now")

    def _after_hold(self, code: int | None) -> None:
        """The run ended because of a hold: no backoff, no crash count (the node did
        nothing wrong); run() then waits for the release."""
        st = self.status
        self._record_exit(ExitInfo(code, "held", time.time(), describe_exit(code)))
        st.pid = None
        st.started_mono = st.healthy_since_mono = None
        st.memory_bytes = st.cpu_percent = st.processes = None
        st.crash_loop = False
        st.recent_failures = 0
        self._fresh_counters()
        self._fire(Event.EXITED)
        hold = self._hold
        log.info("node stopped and held: %s", hold.reason if hold else "(released meanwhile)")

    def _after_exit(self, code: int | None, reason: str | None) -> float:
        now = time.monotonic()
        st = self.status
        healthy = now - st.healthy_since_mono if st.healthy_since_mono is not None else 0.0
        decision = decide_after_exit(
            returncode=code,
            not_set_up_code=self.config.node.not_set_up_exit_code,
            restart_reason=reason,
            healthy_seconds=healthy,
            now=now,
            backoff=self.backoff,
            crash_loop=self.crash_loop,
            setup_recheck=self.config.node.setup_recheck_seconds,
        )
        st.pid = None
        st.started_mono = st.healthy_since_mono = None
        st.memory_bytes = st.cpu_percent = st.processes = None
        detail = describe_exit(code) + (f"; {self._exit_detail}" if self._exit_detail else "")
        if decision.action == "needs-setup":
            self._record_exit(ExitInfo(code, "not-set-up", time.time(), detail))
            self._fire(Event.EXITED_NOT_SET_UP)
            self._log_needs_setup(now)
        else:
            self._needs_setup_logged = None
            label = reason or ("start-failed" if code is None else "crash")
            self._record_exit(ExitInfo(code, label, time.time(), detail))
            st.restarts += 1
            newly_looping = decision.crash_loop and not st.crash_loop
            st.crash_loop = decision.crash_loop
            st.recent_failures = self.crash_loop.recent(now)
            self._fire(Event.EXITED_LOOPING if decision.crash_loop else Event.EXITED)
            if label in ("crash", "start-failed"):
                log.warning("node %s; restarting in %.3g s", detail, decision.delay)
                self._record_error(f"node {detail}", reason=label, exit_code=code)
            else:
                log.info("restarting the node in %.3g s (%s)", decision.delay, label)
            if newly_looping:
                message = (
                    f"node is in a crash loop: {st.recent_failures} failures in "
                    f"{self.config.restart.crash_loop_window_seconds:g} s; the keeper keeps "
                    f"restarting it (next in {decision.delay:.3g} s)"
                )
                log.warning(message)
                self._record_error(message, reason="crash-loop")
        st.next_start_at = time.time() + decision.delay
        return decision.delay

    def _log_needs_setup(self, now: float) -> None:
        every = self.config.node.needs_setup_log_seconds
        if self._needs_setup_logged is not None and now - self._needs_setup_logged < every:
            return
        first = self._needs_setup_logged is None
        self._needs_setup_logged = now
        message = (
            f"the node is not set up (exit code {self.config.node.not_set_up_exit_code}): "
            "fill in the tray app's Set up screen, or run "
            f"`storagenode setup --config-dir {self.config.node_config_path()} ...`; "
            f"the keeper checks again every {self.config.node.setup_recheck_seconds:g} s"
        )
        log.warning(message)
        if first:
            self._record_error(message, reason="needs-setup", level=logging.WARNING)

    async def _sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or less if the keeper shuts down or a switch() comes."""
        assert self._shutdown is not None and self._switch is not None
        waits = [
            asyncio.create_task(self._shutdown.wait()),
            asyncio.create_task(self._switch.wait()),
        ]
        try:
            await asyncio.wait(
                waits,
                timeout=None if math.isinf(seconds) else seconds,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            for task in waits:
                task.cancel()

    # -- helpers -------------------------------------------------------------------------

    def _fresh_counters(self) -> None:
        cfg = self.config.restart
        self.backoff = RestartBackoff(
            cfg.backoff_initial_seconds, cfg.backoff_max_seconds, cfg.backoff_reset_after_seconds
        )
        self.crash_loop = CrashLoopDetector(cfg.crash_loop_crashes, cfg.crash_loop_window_seconds)

    def _record_exit(self, info: ExitInfo) -> None:
        self.status.record_exit(info)
        self._exits += 1
        self._exit_log.append(
            ExitView(
                self._exits,
                info.code,
                info.reason,
                info.detail,
                tuple(self.output_tail),
                self._run_generation,
            )
        )
        self._changed()

    def _spec(self) -> LaunchSpec:
        env = dict(os.environ)
        env.update(self.config.node_env())
        if self.config.limits.gomaxprocs:
            procs = self._gomaxprocs()
            if procs is not None:
                # A Go node otherwise sizes its scheduler to every core of the machine.
                env["GOMAXPROCS"] = str(procs)
        assert self._argv is not None
        return LaunchSpec(
            argv=list(self._argv),
            env=env,
            cwd=self.config.node_cwd(),
            limits=self.limits,
            name="storagenode",
        )

    def _gomaxprocs(self) -> int | None:
        counts = []
        if self.cores is not None:
            counts.append(len(self.cores))
        if self.config.limits.cpu_rate_percent is not None:
            counts.append(max(1, math.ceil(self.config.limits.cpu_rate_percent / 100)))
        return min(counts) if counts else None

    def _fire(self, event: Event) -> None:
        before = self.status.state
        self.status.state = transition(before, event)
        self._changed()
        if self.status.state is not before:
            log.debug("state %s → %s (%s)", before.value, self.status.state.value, event.value)

    def _record_error(
        self, message: str, *, reason: str, level: int = logging.ERROR, **fields: Any
    ) -> None:
        if self.errors is None:
            return
        try:
            self.errors.record("keeper", level, message, reason=reason, **fields)
        except Exception:
            log.exception("cannot write the error index")

    def _release_all(self) -> None:
        # A cgroup can only be removed once the kernel has emptied it, which may take a
        # moment after SIGKILL; what fails now is retried after the next run.
        still = []
        for handle in self._unreleased:
            self.platform.release(handle)
            if getattr(handle, "cgroup", None) is not None:
                still.append(handle)
        self._unreleased = still
