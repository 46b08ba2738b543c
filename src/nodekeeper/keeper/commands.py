"""The keeper's command group: `nodekeeper run`, `nodekeeper status`, `nodekeeper update`.

``register(subparsers)`` adds them to the `nodekeeper` parser (nodekeeper.cli.root);
`python -m nodekeeper.keeper` runs `run_command` alone. `run` locks the data directory,
opens the logs and hands the rest to `keeper.wiring.Keeper` (built once, then served).
Everything heavy is imported when a command runs: `nodekeeper status` needs no supervisor.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nodekeeper.cli.errors import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, CommandError
from nodekeeper.keeper.config import DEFAULT_STATUS_PORT, ConfigError, KeeperConfig, load_config

# The human status lives in status_view; these names stay importable from here.
from nodekeeper.keeper.status_view import status_rows, update_rows

__all__ = ["register", "run_command", "status_command", "status_rows", "update_rows"]


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
        "update",
        aliases=["updates"],
        help="ask the running keeper about updates of the node",
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

    from nodekeeper.keeper import control_commands  # `node restart`, `update pause`, ...

    control_commands.register_update(update_sub)
    control_commands.register(subparsers)


# -- run ---------------------------------------------------------------------------------


def _load(path: Path | None) -> KeeperConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None


def run_command(args: argparse.Namespace) -> int:
    config = _load(args.config)
    from nodekeeper.keeper.wiring import Keeper, node_platform

    # First: a second keeper on this data directory must write nothing (no log line, no
    # journal recovery) before it is refused.
    lock = _lock_data_dir(config)
    try:
        logs = _setup_logging(config)
        try:
            try:
                keeper = Keeper.build(
                    config, node_platform(config), sink=logs.sink, errors=logs.errors
                )
            except ConfigError as exc:
                where = f"{config.source}: " if config.source else ""
                raise CommandError(f"{where}{exc}", EXIT_USAGE) from None
            asyncio.run(keeper.serve())
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
