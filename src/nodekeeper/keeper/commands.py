"""`nodekeeper run` and `nodekeeper status`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nodekeeper.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, CommandError
from nodekeeper.keeper.config import DEFAULT_STATUS_PORT, ConfigError, KeeperConfig, load_config

# The human status lives in status_view; these names stay importable from here.
from nodekeeper.keeper.status_view import status_rows, update_rows

__all__ = ["register", "run_command", "serve", "status_command", "status_rows", "update_rows"]

log = logging.getLogger("nodekeeper.keeper")


def register(subparsers: argparse._SubParsersAction) -> None:
    run = subparsers.add_parser(
        "run",
        help="run the keeper: supervise the storage node (foreground)",
        description="Run the storage node, probe it, restart it, cap its resources, and "
        "serve the status API on loopback. SIGTERM/SIGINT stop the node gracefully.",
    )
    run.add_argument("--config", type=Path, metavar="FILE", help="keeper config (TOML)")
    run.set_defaults(handler=run_command)

    status = subparsers.add_parser("status", help="show the node's status from the keeper")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    where = status.add_mutually_exclusive_group()
    where.add_argument("--config", type=Path, metavar="FILE", help="find the keeper from FILE")
    where.add_argument(
        "--url",
        help=f"the keeper's status URL (default http://127.0.0.1:{DEFAULT_STATUS_PORT})",
    )
    status.set_defaults(handler=status_command)

    update = subparsers.add_parser(
        "update", help="ask the running keeper about updates of the node"
    )
    update_sub = update.add_subparsers(dest="update_command", metavar="COMMAND", required=True)
    check = update_sub.add_parser(
        "check",
        help="check for a new version now and print the decision",
        description="Ask the running keeper to check the control plane now (without "
        "restarting the node) and print what it decided. A decided update goes on in the "
        "keeper; follow it with `nodekeeper status`.",
    )
    check.add_argument("--json", action="store_true", help="print the answer as JSON")
    check.add_argument(
        "--timeout",
        type=float,
        default=150.0,
        metavar="SECONDS",
        help="give up waiting for the keeper after SECONDS (default 150)",
    )
    where = check.add_mutually_exclusive_group()
    where.add_argument("--config", type=Path, metavar="FILE", help="find the keeper from FILE")
    where.add_argument(
        "--url",
        help=f"the keeper's status URL (default http://127.0.0.1:{DEFAULT_STATUS_PORT})",
    )
    check.set_defaults(handler=update_check_command)


# -- run ---------------------------------------------------------------------------------


def _load(path: Path | None) -> KeeperConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None


def run_command(args: argparse.Namespace) -> int:
    config = _load(args.config)
    from nodekeeper.keeper.supervisor import Supervisor
    from nodekeeper.platform import current_platform

    # First: a second keeper on this data directory must write nothing (no log line, no
    # journal recovery) before it is refused.
    lock = _lock_data_dir(config)
    try:
        logs = _setup_logging(config)
        try:
            try:
                supervisor = Supervisor(
                    config, current_platform(), sink=logs.sink, errors=logs.errors
                )
            except ConfigError as exc:
                where = f"{config.source}: " if config.source else ""
                raise CommandError(f"{where}{exc}", EXIT_USAGE) from None
            asyncio.run(serve(config, supervisor))
        finally:
            logs.close()
    finally:
        lock.release()
    return EXIT_OK


def _lock_data_dir(config: KeeperConfig) -> Any:
    """The data directory's single-instance lock, or a one-line refusal (exit 1: the
    config is fine, another keeper runs with it)."""
    from nodekeeper.keeper import instance_lock

    try:
        return instance_lock.acquire(config.data_path())
    except instance_lock.InstanceLocked as exc:
        raise CommandError(str(exc), EXIT_FAILURE) from None
    except (instance_lock.LockUnavailable, OSError) as exc:
        raise CommandError(f"cannot lock the data directory: {exc}", EXIT_FAILURE) from None


async def serve(config: KeeperConfig, supervisor: Any) -> None:
    """Serve the status API and supervise until `supervisor.request_shutdown()` (SIGTERM,
    SIGINT, or a Windows service stop calling it from its own thread). With an
    ``[update]`` table, the updater and the report sender run alongside."""
    from nodekeeper.keeper.api import serve_status

    updating = _updating(config, supervisor) if config.update is not None else None
    snapshot = supervisor.snapshot if updating is None else updating.snapshot
    host, port = config.status_host_port()
    try:
        server = await serve_status(host, port, snapshot)
    except OSError as exc:
        raise CommandError(
            f"cannot serve the status API on {host}:{port} ({exc.strerror}); "
            "is another keeper running? (status.listen)",
            EXIT_FAILURE,
        ) from None
    network = _network_abort() if updating is not None else None

    def stop() -> None:
        supervisor.request_shutdown()
        # At once, not after the node stopped: a check or download blocked on a slow
        # server in a worker thread would otherwise keep the process alive after
        # "keeper stopped" (asyncio.run waits for its threads).
        if network is not None:
            network.abort("the keeper is stopping")

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(signum, stop)
        except (NotImplementedError, RuntimeError):  # Windows: the service stop calls it
            signal.signal(signum, lambda *_: stop())
    log.info("keeper started; status on http://%s:%d/status", host, port)
    background = updating.start() if updating is not None else []
    try:
        await supervisor.run()
    finally:
        # Also reached by a Windows service stop or a self-update hand-over, which call
        # supervisor.request_shutdown() directly.
        if network is not None:
            network.abort("the keeper is stopping")
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        server.close()
        with contextlib.suppress(Exception):
            await server.wait_closed()
    log.info("keeper stopped")


class _Updating:
    """The updater's parts in the keeper process: reporter, state machine, check loop."""

    def __init__(self, supervisor: Any, reporter: Any, cycle: Any, self_cycle: Any) -> None:
        self.supervisor = supervisor
        self.reporter = reporter
        self.cycle = cycle
        # The keeper's own update loop (nodekeeper.selfupdate.runner); None unless started by
        # nodekeeper-launcher.
        self.self_cycle = self_cycle

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
        return data


def _updating(config: KeeperConfig, supervisor: Any) -> _Updating:
    """Build the updater and recover its journal before the supervisor starts anything:
    the recovery decides which installed version the node runs."""
    from nodekeeper.identity import IdentitySource
    from nodekeeper.keeper.reports import Reporter, ReporterSettings, ReportingErrorSink
    from nodekeeper.updater.cycle import CycleSettings, UpdateCycle
    from nodekeeper.updater.download import DownloadSettings
    from nodekeeper.updater.machine import Layout, MachineSettings, UpdateMachine
    from nodekeeper.updater.schedule import CheckTiming
    from nodekeeper.version.platforms import this_platform

    update = config.update
    assert update is not None
    # One INFO line per check and per report would drown the keeper log.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    reporter = Reporter(
        ReporterSettings(
            server_url=update.server,
            directory=config.state_path() / "reports",
            request_deadline=update.request_deadline_seconds,
        ),
        IdentitySource.in_config_dir(config.node_config_path()),
    )
    ca_bundle = Path(config.expand(update.ca_bundle)) if update.ca_bundle else None
    settings = MachineSettings(
        process=update.process,
        platform=update.platform or this_platform(),
        args=config.update_args(),
        probation_seconds=update.probation_seconds,
        start_timeout_seconds=update.probation_start_timeout_seconds,
        preflight_timeout_seconds=update.preflight_timeout_seconds,
        downgrade_refused_exit_code=update.downgrade_refused_exit_code,
        download=DownloadSettings(
            connect_timeout=update.connect_timeout_seconds,
            read_timeout=update.read_timeout_seconds,
            request_deadline=update.request_deadline_seconds,
            ca_bundle=ca_bundle,
        ),
    )
    machine = UpdateMachine(
        settings,
        Layout(config.data_path()),
        supervisor,
        reports=reporter,
        errors=supervisor.errors,
    )
    # The supervisor's crash-loop, hang and limit events become reports too.
    supervisor.errors = ReportingErrorSink(
        reporter, version=machine.running_version, index=supervisor.errors, process=update.process
    )
    machine.recover()
    timing = CheckTiming(
        interval=update.interval_seconds,
        jitter=update.jitter,
        backoff_initial=update.backoff_initial_seconds,
        backoff_max=max(update.backoff_max_seconds, update.backoff_initial_seconds),
    )
    cycle = UpdateCycle(
        CycleSettings(
            server=update.server,
            timing=timing,
            first_check_now=update.first_check == "now",
            node_id=update.node_id,
            node_config_dir=config.node_config_path(),
        ),
        machine,
        supervisor,
        reports=reporter,
        client_factory=lambda: _client(settings),
    )
    from nodekeeper.selfupdate.runner import self_update_cycle

    return _Updating(supervisor, reporter, cycle, self_update_cycle(config, supervisor, reporter))


def _network_abort() -> Any:
    """The process-wide abort every keeper HTTP client obeys, armed for this run (an
    earlier keeper run in the same process, e.g. a test, may have fired it)."""
    from nodekeeper.updater.netabort import KEEPER_SHUTDOWN

    KEEPER_SHUTDOWN.reset()
    return KEEPER_SHUTDOWN


def _client(settings: Any) -> Any:
    from nodekeeper.updater.download import make_client

    return make_client(settings.download)


@dataclass
class _KeeperLogs:
    sink: Any
    errors: Any
    handlers: list[logging.Handler]

    def close(self) -> None:
        """Detach and close everything, so nothing keeps the log directory open (a keeper
        run in-process by a test or a service host may be followed by another)."""
        root = logging.getLogger()
        for handler in self.handlers:
            root.removeHandler(handler)
            handler.close()
        self.sink.close()
        self.errors.close()


def _setup_logging(config: KeeperConfig) -> _KeeperLogs:
    """Keeper log and node output into rotating files under the data dir, errors into the
    error index; the keeper's log also goes to stderr (the terminal, or journald)."""
    from nodekeeper.keeper.output import RotatingSink
    from nodekeeper.logs import ErrorIndex, setup_keeper_logging

    directory = config.logs_path()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        errors = ErrorIndex(directory, config.logs)
        handler = setup_keeper_logging(directory, config.logs, errors)
        sink = RotatingSink(directory, config.logs, errors)
    except OSError as exc:
        raise CommandError(f"cannot write logs in {directory}: {exc.strerror}") from None
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.getLogger().addHandler(console)
    return _KeeperLogs(sink, errors, [handler, console])


# -- status ------------------------------------------------------------------------------


def _status_base(args: argparse.Namespace) -> str:
    """The keeper's status API base URL, from --url or the config's status.listen."""
    if args.url:
        url = args.url.rstrip("/")
        return url.removesuffix("/status")
    host, port = _load(args.config).status_host_port()
    return f"http://{host}:{port}" if ":" not in host else f"http://[{host}]:{port}"


def status_command(args: argparse.Namespace) -> int:
    url = _status_base(args) + "/status"
    from nodekeeper.keeper import loopback
    from nodekeeper.keeper.status_view import render_status

    try:
        response = asyncio.run(loopback.request("GET", url, timeout=5.0))
    except loopback.HTTPError as exc:
        raise CommandError(f"no keeper answering at {url} ({exc}); is it running?") from None
    if response.status != 200:
        raise CommandError(f"{url} answered HTTP {response.status}")
    data = json.loads(response.body)
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        sys.stdout.write(render_status(data))
    return EXIT_OK


def update_check_command(args: argparse.Namespace) -> int:
    from nodekeeper.keeper.update_check import run_update_check

    return run_update_check(_status_base(args), args.timeout, args.json)
