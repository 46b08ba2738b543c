"""The keeper's parts, built once from its config, and run together.

`Keeper.build` is the whole start-up wiring of `nodekeeper run` and `python -m
nodekeeper.keeper`, in the order the parts need each other:

1. ``[update]`` becomes typed settings, once (`keeper.update_settings`);
2. the report sender, then the error sink that turns the supervisor's crash-loop, hang
   and limit events into reports as well as error-index entries;
3. the supervisor, given that sink (nothing is patched in afterwards);
4. the node's update machine, which recovers its journal before anything runs (the
   recovery decides which installed version the node starts), its check loop, and the
   keeper's own update loop when nodekeeper-launcher started this keeper.

`Keeper.serve` then runs them beside the status API until the supervisor is asked to
shut down, with the firewall check (`keeper.firewall_watch`, unless ``[firewall] enabled
= false``) and the storage watch (`keeper.storage_watch`: storage, disk, identity, clock)
alongside. With alert channels in ``[alerts]``, the error sink every part records through
is wrapped first, so their problems also raise alerts (`keeper.alerting`, decision 070).
A keeper without ``[update]`` builds the supervisor alone and never imports the updater
(its idle memory, bench/supervisor_bench.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nodekeeper.cli.errors import EXIT_FAILURE, CommandError
from nodekeeper.keeper.config import KeeperConfig
from nodekeeper.keeper.output import LineSink
from nodekeeper.keeper.storage_watch import NodeWatch, ServerClock
from nodekeeper.keeper.supervisor import Supervisor
from nodekeeper.keeper.task_stop import cancel_and_wait
from nodekeeper.platform.base import Platform

if TYPE_CHECKING:  # the updater's modules load only for a keeper with [update]
    from nodekeeper.keeper.alerting import AlertHub
    from nodekeeper.keeper.control import Control
    from nodekeeper.keeper.firewall_watch import FirewallWatch
    from nodekeeper.keeper.maintenance_store import MaintenanceStore
    from nodekeeper.keeper.reachability import ReachabilityWatch
    from nodekeeper.keeper.reports import Reporter
    from nodekeeper.updater.cycle import UpdateCycle
    from nodekeeper.updater.interfaces import ErrorSink
    from nodekeeper.updater.machine import UpdateMachine
    from nodekeeper.updater.netabort import NetworkAbort

__all__ = ["Keeper", "Updating"]


# The background tasks' end at a stop: cancelled, they end at once; the deadline only
# bounds one that does not (task_stop.py says when that happens).
BACKGROUND_STOP_SECONDS = 5.0

log = logging.getLogger("nodekeeper.keeper")


@dataclass
class Updating:
    """The updater's parts in the keeper process: reporter, state machine, check loops."""

    supervisor: Supervisor
    reporter: Reporter
    machine: UpdateMachine
    cycle: UpdateCycle
    # The keeper's own update loop (nodekeeper.selfupdate); None unless started by
    # nodekeeper-launcher.
    self_cycle: UpdateCycle | None
    # The operator's quiet window and pause, asked by the node's cycle (decision 069).
    maintenance: MaintenanceStore

    def start(self) -> list[asyncio.Task[None]]:
        tasks = [asyncio.create_task(self.reporter.run()), asyncio.create_task(self.cycle.run())]
        if self.self_cycle is not None:
            tasks.append(asyncio.create_task(self.self_cycle.run()))
        return tasks

    async def check_now(self) -> dict[str, Any]:
        """``POST /update/check``: a check cycle now (see keeper.api)."""
        return await self.cycle.check_now()

    def snapshot(self) -> dict[str, Any]:
        data = self.supervisor.snapshot()
        data["update"] = self.cycle.snapshot()
        data["reports"] = self.reporter.snapshot()
        if self.self_cycle is not None:
            data["self_update"] = self.self_cycle.snapshot()
        data["maintenance"] = self.maintenance.status(self.below_minimum())
        # Decision 085: false = installs are checked against the announcement's sha256
        # only (no [update] trusted_root); `status` and the tray show it as a problem.
        data["signed_releases"] = self.machine.settings.trust is not None
        return data

    def below_minimum(self) -> bool:
        """Whether the last decision found the node below the network's minimum."""
        from nodekeeper.version.decision import MINIMUM, SUGGESTED_OVER_BAD_MINIMUM

        decision = self.cycle.decision or {}
        # A decision about another version than the one installed now is stale (the
        # install it decided has happened since).
        fresh = decision.get("current") == self.machine.state.current
        return fresh and decision.get("code") in (MINIMUM, SUGGESTED_OVER_BAD_MINIMUM)


@dataclass
class Keeper:
    """One keeper: its config, the supervisor of the node, and, with ``[update]``, the
    updater's parts."""

    config: KeeperConfig
    supervisor: Supervisor
    updating: Updating | None
    # The firewall check (decision 065); None when [firewall] enabled = false.
    firewall: FirewallWatch | None = None
    # Storage, disk, identity and clock (decision 070); alerts, when [alerts] has a channel.
    watch: NodeWatch | None = None
    alerts: AlertHub | None = None
    # The control plane's dial-back (decision 082); None without [update] or when
    # [reachability] enabled = false.
    reachability: ReachabilityWatch | None = None

    @classmethod
    def build(
        cls, config: KeeperConfig, platform: Platform, *, sink: LineSink, errors: ErrorSink
    ) -> Keeper:
        """Build every part, and recover the update journal. ``sink`` takes the node's
        output, ``errors`` is the error index. Raises ConfigError for what only the
        supervisor can check (CPU cores, the probe) and for an unusable alerts secrets
        file."""
        alerts = _alert_hub(config)
        if alerts is not None:  # every part's problems pass here: one seam for alerts
            errors = alerts.sink(errors)
        clock = ServerClock()
        if config.update is None:
            supervisor = Supervisor(config, platform, sink=sink, errors=errors)
            updating = None
        else:
            updating = _build_updating(config, platform, sink=sink, index=errors, clock=clock)
            supervisor = updating.supervisor
        firewall = _firewall_watch(config, supervisor, errors)
        # The node ID from its key (cryptography) only where the reports load it anyway.
        watch = NodeWatch(config, supervisor, errors, clock, parse_key=updating is not None)
        reachability = _reachability_watch(config, supervisor, updating)
        return cls(config, supervisor, updating, firewall, watch, alerts, reachability)

    def snapshot(self) -> dict[str, Any]:
        """The status API's body: the supervisor's (with the updater's parts when it
        updates) and the firewall's verdict."""
        data = self.supervisor.snapshot() if self.updating is None else self.updating.snapshot()
        data["firewall"] = self.firewall.snapshot() if self.firewall else {"enabled": False}
        if self.watch is not None:
            data["watch"] = self.watch.snapshot()
        data["alerts"] = self.alerts.snapshot() if self.alerts else {"enabled": False}
        data["reachability"] = self.reachability.snapshot() if self.reachability else None
        data.setdefault("maintenance", None)  # null: this keeper does not manage updates
        data.setdefault("signed_releases", None)  # null: nor does it install anything
        data["dashboard_url"] = self.config.node.dashboard_url
        return data

    def control(self) -> Control:
        """The actions of the status API, with the control token made at start if
        missing (decision 069). Raises OSError when the state dir cannot be written."""
        from nodekeeper.keeper.control import Control
        from nodekeeper.keeper.control_token import ensure_token

        token = ensure_token(self.config.state_path())
        updating = self.updating
        return Control(
            self.config,
            self.supervisor,
            token,
            update_lock=updating.cycle.update_lock if updating is not None else None,
            maintenance=updating.maintenance if updating is not None else None,
            below_minimum=updating.below_minimum if updating is not None else lambda: False,
        )

    async def serve(self) -> None:
        """Serve the status API and supervise until `supervisor.request_shutdown()`
        (SIGTERM, SIGINT, or a Windows service stop calling it from its own thread). With
        an ``[update]`` table, the updater and the report sender run alongside."""
        from nodekeeper.keeper.api import serve_status

        supervisor, updating = self.supervisor, self.updating
        check = updating.check_now if updating is not None else None  # POST /update/check
        host, port = self.config.status_host_port()
        try:
            control = self.control()
        except OSError as exc:
            raise CommandError(
                f"cannot write the control token in {self.config.state_path()}: {exc}",
                EXIT_FAILURE,
            ) from None
        try:
            server = await serve_status(host, port, self.snapshot, check, control=control)
        except OSError as exc:
            raise CommandError(
                f"cannot serve the status API on {host}:{port} ({exc.strerror}); "
                "is another keeper running? (status.listen)",
                EXIT_FAILURE,
            ) from None
        network = _network_abort() if updating is not None else None

        def stop() -> None:
            from nodekeeper.selfupdate.handover import handed_over, handing_back

            # A stop after this keeper asked to hand over completes the hand-over, and a
            # stop the launcher marks as a hand-back (this keeper failed its probation)
            # is one too: the node stays for the next keeper (decision 063).
            if handed_over() is not None or handing_back():
                supervisor.request_handover()
            else:
                supervisor.request_shutdown()
            # At once, not after the node stopped: a check or download blocked on a slow
            # server in a worker thread would otherwise keep the process alive after
            # "keeper stopped" (asyncio.run waits for its threads).
            if network is not None:
                network.abort("the keeper is stopping")

        _on_stop_signals(stop)
        log.info("keeper started; status on http://%s:%d/status", host, port)
        background = updating.start() if updating is not None else []
        if self.alerts is not None:
            background.append(self.alerts.start(self.snapshot))
        if self.firewall is not None:
            background.append(asyncio.create_task(self.firewall.run()))
        if self.reachability is not None:
            background.append(asyncio.create_task(self.reachability.run()))
        if self.watch is not None:
            # The first look before the node starts (bounded by the look's deadline): a
            # keeper started while the storage disk is unplugged starts no node.
            await self.watch.tick()
            background.append(asyncio.create_task(self.watch.run()))
        try:
            await supervisor.run()
        finally:
            # Also reached by a Windows service stop or a self-update hand-over, which call
            # supervisor.request_shutdown() directly.
            if network is not None:
                network.abort("the keeper is stopping")
            await cancel_and_wait(background, BACKGROUND_STOP_SECONDS)
            if self.alerts is not None:  # the alerts in flight, within their deadline
                await self.alerts.close()
            server.close()
            with contextlib.suppress(Exception):
                await server.wait_closed()
        log.info("keeper stopped")


def _build_updating(
    config: KeeperConfig,
    platform: Platform,
    *,
    sink: LineSink,
    index: ErrorSink,
    clock: ServerClock | None = None,
) -> Updating:
    from nodekeeper.identity import IdentitySource
    from nodekeeper.keeper.maintenance_store import MaintenanceStore
    from nodekeeper.keeper.reports import Reporter, ReportingErrorSink
    from nodekeeper.keeper.update_settings import UpdateSettings
    from nodekeeper.selfupdate.runner import keeper_update_cycle
    from nodekeeper.updater.cycle import UpdateCycle
    from nodekeeper.updater.download import make_client
    from nodekeeper.updater.machine import Layout, UpdateMachine

    settings = UpdateSettings.from_config(config)
    # One INFO line per check and per report would drown the keeper log.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    reporter = Reporter(settings.reporter, IdentitySource.in_config_dir(config.node_config_path()))
    machine: UpdateMachine | None = None

    def running_version() -> str | None:
        # The machine drives the supervisor, so it is built after it; the supervisor
        # records nothing before it runs, which is after the build.
        return machine.running_version() if machine is not None else None

    # The supervisor's crash-loop, hang and limit events become reports too; each still
    # reaches the error index behind it.
    errors = ReportingErrorSink(
        reporter, version=running_version, index=index, process=settings.process
    )
    supervisor = Supervisor(config, platform, sink=sink, errors=errors)
    # The machine's own problems go to the error index only: it reports them itself.
    machine = UpdateMachine(
        settings.machine,
        Layout(config.data_path()),
        supervisor,
        reports=reporter,
        errors=index,
    )
    machine.recover()
    download = settings.machine.download
    maintenance = MaintenanceStore(config.state_path(), settings.quiet_window)
    cycle = UpdateCycle(
        settings.check,
        machine,
        supervisor,
        reports=reporter,
        # The check's answers carry the control plane's Date: the storage watch's clock.
        client_factory=lambda: _clocked(make_client(download), clock),
        may_update=maintenance.verdict,  # the keeper's own updates are not held
    )
    self_cycle = keeper_update_cycle(
        settings.check,
        settings.self_update,
        shutdown=supervisor.request_handover,
        update_lock=cycle.update_lock,  # one plan at a time: the node's or the keeper's
        reports=reporter,
        errors=errors,
    )
    return Updating(supervisor, reporter, machine, cycle, self_cycle, maintenance)


def _clocked(client: Any, clock: ServerClock | None) -> Any:
    return clock.attach(client) if clock is not None else client


def _alert_hub(config: KeeperConfig) -> AlertHub | None:
    """The alert dispatcher for ``[alerts]`` behind the keeper's hub; None when no
    channel is configured (nothing of the alert channels is then imported)."""
    if not config.alerts.enabled:
        return None
    from nodekeeper.alerts import SecretsError, build_dispatcher
    from nodekeeper.identity import IdentitySource
    from nodekeeper.keeper.alerting import AlertHub
    from nodekeeper.keeper.config import ConfigError

    state = config.alerts_state_path()
    try:
        state.parent.mkdir(parents=True, exist_ok=True)
        dispatcher = build_dispatcher(
            config.alerts,
            state_path=state,
            secrets_path=config.alerts_secrets_path(),
            on_problem=log.warning,
        )
    except SecretsError as exc:
        raise ConfigError(f"[alerts] {exc}") from None
    except OSError as exc:
        raise ConfigError(f"[alerts] cannot create {state.parent}: {exc.strerror}") from None
    identity = IdentitySource.in_config_dir(config.node_config_path())
    return AlertHub(dispatcher, node_id=identity.node_id_text)


def _firewall_watch(
    config: KeeperConfig, supervisor: Supervisor, index: ErrorSink
) -> FirewallWatch | None:
    """The firewall check, on the node's program as the supervisor runs it now (it
    changes with every update). Its entries go to the error index only (no reports:
    decision 065)."""
    if not config.firewall.enabled:
        return None
    from nodekeeper.keeper.firewall_watch import FirewallWatch

    def program() -> str | None:
        command = supervisor.command
        return command[0] if command else None

    return FirewallWatch(config, program, index)


def _reachability_watch(
    config: KeeperConfig, supervisor: Supervisor, updating: Updating | None
) -> ReachabilityWatch | None:
    """The dial-back check, asked of the control plane of ``[update]`` (decision 082),
    once the node is healthy; its becoming unreachable is reported through the reporter."""
    if updating is None or not config.reachability.enabled:
        return None
    from nodekeeper.keeper.reachability import ReachabilityWatch
    from nodekeeper.keeper.states import State

    return ReachabilityWatch(
        config,
        healthy=lambda: supervisor.status.state is State.RUNNING,
        reports=updating.reporter,
        version=updating.machine.running_version,
        process=config.update.process if config.update else "storagenode",
    )


def node_platform(config: KeeperConfig) -> Platform:
    """How this keeper runs its node. Under the launcher (the installed service) each node
    runs under a node shim anchored to the launcher, so that a keeper hand-over or crash
    leaves it running for the next keeper (decision 063). Run by hand, the node is the
    keeper's own child and dies with it (decision 011): nobody would hand it over, and
    nothing would stop an orphan."""
    from nodekeeper.launcher.protocol import ENV_LAUNCHER_PID, ENV_STATE_DIR
    from nodekeeper.platform import current_platform

    launcher = _launcher_pid(os.environ.get(ENV_LAUNCHER_PID), os.environ.get(ENV_STATE_DIR))
    if launcher is None or sys.platform not in ("win32", "linux"):
        return current_platform()  # the shim's launcher watch needs pidfd or a handle
    from nodekeeper.platform.shimmed import ShimOptions

    options = ShimOptions(
        anchor_pid=launcher,
        state_dir=config.state_path() / "shim",
        stop_timeout=config.stop.timeout_seconds,
    )
    if sys.platform == "win32":
        from nodekeeper.platform.windows import WindowsPlatform

        return WindowsPlatform(options)
    from nodekeeper.platform.posix import PosixPlatform

    return PosixPlatform(options)


def _launcher_pid(said: str | None, state_dir: str | None) -> int | None:
    """The launcher this keeper runs under, or None when run by hand. A launcher from
    before ENV_LAUNCHER_PID is the keeper's parent on Linux; on Windows, where asking
    is not possible everywhere (see ENV_LAUNCHER_PID), such a keeper runs its node
    directly, as before decision 063."""
    if not state_dir:
        return None
    if said and said.isdigit():
        return int(said)
    return os.getppid() if sys.platform != "win32" else None


def _network_abort() -> NetworkAbort:
    """The process-wide abort every keeper HTTP client obeys, armed for this run (an
    earlier keeper run in the same process, e.g. a test, may have fired it)."""
    from nodekeeper.updater.netabort import KEEPER_SHUTDOWN

    KEEPER_SHUTDOWN.reset()
    return KEEPER_SHUTDOWN


def _on_stop_signals(stop: Callable[[], None]) -> None:
    """SIGTERM and SIGINT call ``stop`` (on the loop; on Windows, where the loop cannot
    take signal handlers, as a plain handler: the service stop calls it too)."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(signum, stop)
        except (NotImplementedError, RuntimeError):  # Windows: the service stop calls it
            signal.signal(signum, lambda *_: stop())
