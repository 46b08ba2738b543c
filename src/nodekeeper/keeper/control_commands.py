"""`nodekeeper node restart`, `nodekeeper update pause` and `nodekeeper update
quiet-window` (also spelt `updates ...`): the keeper's actions from a shell, through
``keeper.client`` (decision 069).

They need the keeper's control token, which only administrators can read: without it
each says so in one line and exits 1.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from nodekeeper.cli.errors import EXIT_OK, EXIT_USAGE, CommandError
from nodekeeper.keeper.config import DEFAULT_STATUS_PORT, ConfigError, load_config

URL_HELP = (
    f"the keeper's status URL (default: from the config, http://127.0.0.1:{DEFAULT_STATUS_PORT})"
)


def _where(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, metavar="FILE", help="the keeper's config (its URL and token)"
    )
    parser.add_argument("--url", help=URL_HELP)
    parser.add_argument("--json", action="store_true", help="print the answer as JSON")


def register(subparsers: argparse._SubParsersAction) -> None:
    node = subparsers.add_parser("node", help="act on the node through the running keeper")
    node_sub = node.add_subparsers(dest="node_command", metavar="COMMAND", required=True)
    restart = node_sub.add_parser(
        "restart",
        help="restart the node now (gracefully, no backoff); needs administrator rights",
        description="Ask the running keeper to stop the node gracefully and start it again "
        "at once. Refused while an update is being carried out.",
    )
    _where(restart)
    restart.set_defaults(handler=restart_command)


def register_update(update_sub: argparse._SubParsersAction) -> None:
    """`update pause` and `update quiet-window`, beside `update check`."""
    pause = update_sub.add_parser(
        "pause",
        help="hold updates for a while (not below the network's minimum); needs admin rights",
        description="Hold the node's updates until a time. Checks go on; an update below "
        "the network's minimum version is never held.",
    )
    # Not required=True: without a flag the command says so itself, after the config and
    # the keeper (a wrong --config or a keeper that is down is the first thing to fix).
    how = pause.add_mutually_exclusive_group()
    how.add_argument("--for", dest="duration", metavar="DURATION", help='e.g. "2h", "30m", "1d"')
    how.add_argument("--until", metavar="TIME", help="local ISO time, e.g. 2026-12-04T08:00")
    how.add_argument("--resume", action="store_true", help="end the pause now")
    _where(pause)
    pause.set_defaults(handler=pause_command)

    quiet = update_sub.add_parser(
        "quiet-window",
        help="no updates during a daily local time window; needs administrator rights",
        description="Set the daily quiet window (local time, e.g. 18:00-23:00; past "
        "midnight wraps) or clear it. An update due inside it waits until it ends, except "
        "below the network's minimum version.",
    )
    quiet.add_argument("window", nargs="?", help="HH:MM-HH:MM, e.g. 18:00-23:00")
    quiet.add_argument("--clear", action="store_true", help="remove the quiet window")
    _where(quiet)
    quiet.set_defaults(handler=quiet_window_command, parser=quiet)


def _client(args: argparse.Namespace) -> Any:
    from nodekeeper.keeper.client import KeeperClient

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    client = KeeperClient.from_config(config)
    if args.url:
        client.base_url = args.url.rstrip("/").removesuffix("/status")
    return client


def _run(args: argparse.Namespace, call: Any, client: Any = None) -> dict[str, Any]:
    from nodekeeper.keeper.client import KeeperClientError

    try:
        return call(client or _client(args))
    except KeeperClientError as exc:
        raise CommandError(str(exc)) from None


def _print(args: argparse.Namespace, data: dict[str, Any], text: str) -> int:
    print(json.dumps(data, indent=2) if args.json else text)
    return EXIT_OK


def restart_command(args: argparse.Namespace) -> int:
    data = _run(args, lambda c: c.restart())
    return _print(args, data, "the node was restarted")


def pause_until(args: argparse.Namespace, now: float) -> float | None:
    """The pause's end from the flags (pure but for the local time zone)."""
    from nodekeeper.units import parse_duration

    if args.resume:
        return None
    if args.duration is not None:
        try:
            return now + parse_duration(args.duration)
        except ValueError as exc:
            raise CommandError(f"--for {args.duration!r}: {exc}", EXIT_USAGE) from None
    try:
        return datetime.fromisoformat(args.until).timestamp()
    except ValueError:
        raise CommandError(
            f"--until {args.until!r}: write a local time as 2026-12-04T08:00", EXIT_USAGE
        ) from None


def pause_command(args: argparse.Namespace) -> int:
    client = _client(args)
    if not (args.resume or args.duration or args.until):
        _run(args, lambda c: c.status(), client)
        raise CommandError("say how long: --for 2h, --until 2026-12-04T08:00 or --resume", 2)
    until = pause_until(args, time.time())
    data = _run(args, lambda c: c.pause_updates(until), client)
    return _print(args, data, describe(data))


def quiet_window_command(args: argparse.Namespace) -> int:
    if args.clear == (args.window is not None):
        args.parser.error("give the window (e.g. 18:00-23:00) or --clear, not both")
    data = _run(args, lambda c: c.set_quiet_window(None if args.clear else args.window))
    return _print(args, data, describe(data))


def describe(maintenance: dict[str, Any]) -> str:
    """The maintenance dict in words (pure but for the local time zone)."""
    window = maintenance.get("quiet_window")
    paused = maintenance.get("paused_until")
    lines = [f"quiet window: {window or 'none'}"]
    when = f"{datetime.fromtimestamp(paused):%Y-%m-%d %H:%M}" if paused else "not paused"
    lines.append(f"paused until: {when}" if paused else when)
    why = (maintenance.get("verdict") or {}).get("why")
    lines.append(f"now: {why}" if why else "now: updates may start")
    return "\n".join(lines)
