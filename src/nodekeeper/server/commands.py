"""`nodekeeper server run` and the admin commands that talk to a control plane.

The control plane's command group: ``register(subparsers)`` adds `server`, `release`,
`minimum` and `rollout` to the `nodekeeper` parser (nodekeeper.cli.root).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from nodekeeper.cli.errors import EXIT_USAGE, CommandError

if TYPE_CHECKING:
    from .client import AdminClient

# Handlers import what they use: `nodekeeper run` (the keeper service) shares this
# parser and should not pay for httpx, rich and the server at start-up.

DEFAULT_LISTEN = "127.0.0.1:7780"


def default_data_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("nodekeeper", appauthor=False)) / "control-plane"


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise CommandError(f"--listen {text!r} must be HOST:PORT, e.g. 127.0.0.1:7780", EXIT_USAGE)
    return host.strip("[]"), int(port)


def _number(low: float, high: float, *, low_open: bool = False, what: str = "a number"):
    """An argparse type: a finite float in [low, high] (or (low, high]); nan and inf
    parse as floats but mean nothing here, and the server could not even be sent them."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        inside = (low < value if low_open else low <= value) and value <= high
        if not math.isfinite(value) or not inside:
            bound = "more than" if low_open else "from"
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {what}: use a number {bound} {low:g} to {high:g}"
            )
        return value

    return parse


PERCENT = _number(0, 100, what="a percent")
RATE = _number(0, 10_000, low_open=True, what="a rate in percent per day")
SECONDS = _number(0, 365 * 86_400, what="a number of seconds")
POSITIVE_SECONDS = _number(0, 86_400, low_open=True, what="a number of seconds")


def register(sub: argparse._SubParsersAction) -> None:
    server = sub.add_parser("server", help="the control plane")
    server_sub = server.add_subparsers(dest="server_command", required=True, metavar="COMMAND")
    run = server_sub.add_parser("run", help="serve announcements and the admin API")
    run.add_argument("--db", help="SQLAlchemy URL (default: an SQLite file in the data dir)")
    run.add_argument("--listen", default=DEFAULT_LISTEN, help="HOST:PORT (default %(default)s)")
    run.add_argument("--data-dir", type=Path, help="state, artifacts and the generated token")
    run.add_argument("--public-url", help="the URL nodes use to reach this server")
    run.add_argument("--admin-token-file", type=Path, help="file holding the admin token")
    run.add_argument(
        "--db-wait",
        type=SECONDS,
        default=60.0,
        metavar="SECONDS",
        help="at start, retry an unreachable database this long (default %(default)s)",
    )
    run.add_argument("--ramp-tick", type=SECONDS, default=60.0, help="seconds per ramp step")
    run.add_argument(
        "--poll-interval", type=POSITIVE_SECONDS, default=1.0, help="change poll, seconds"
    )
    run.add_argument(
        "--report-rate",
        type=int,
        default=30,
        metavar="N",
        help="reports a node may send per minute before 429 (default %(default)s)",
    )
    run.add_argument(
        "--docs",
        action="store_true",
        help="serve /docs and /redoc (they load Swagger UI and ReDoc from a CDN in your "
        "browser); /openapi.json is always served",
    )
    run.set_defaults(handler=_server_run)

    server_opt = argparse.ArgumentParser(add_help=False)
    server_opt.add_argument(
        "--server",
        help="control plane URL (or $NODEKEEPER_SERVER); the admin token is read from "
        "$NODEKEEPER_ADMIN_TOKEN (`server run` prints where its token is)",
    )

    release = sub.add_parser("release", help="releases")
    release_sub = release.add_subparsers(dest="release_command", required=True, metavar="COMMAND")
    process_help = "the process name nodes know it by (the reference node: storagenode)"
    publish = release_sub.add_parser("publish", parents=[server_opt], help="publish a release")
    publish.add_argument("process", help=process_help)
    publish.add_argument("version", help="the release's version (semver, e.g. 1.2.0); immutable")
    publish.add_argument(
        "--artifact",
        action="append",
        required=True,
        metavar="OS_ARCH=PATH_OR_URL",
        help="a build for one platform; repeat for each platform",
    )
    publish.set_defaults(handler=_release_publish)

    minimum = sub.add_parser("minimum", help="the minimum allowed version")
    minimum_sub = minimum.add_subparsers(dest="minimum_command", required=True, metavar="COMMAND")
    minimum_set = minimum_sub.add_parser("set", parents=[server_opt], help="set the minimum")
    minimum_set.add_argument("process", help=process_help)
    minimum_set.add_argument(
        "version", help="a published version; nodes below it install it at once"
    )
    minimum_set.set_defaults(handler=_minimum_set)

    rollout = sub.add_parser("rollout", help="staged rollouts")
    rollout_sub = rollout.add_subparsers(dest="rollout_command", required=True, metavar="COMMAND")
    start = rollout_sub.add_parser("start", parents=[server_opt], help="start a rollout")
    start.add_argument("process", help=process_help)
    start.add_argument("version", help="a published version, newer than the minimum")
    start.add_argument("--rate", type=RATE, help="percent per day (omit to ramp by hand)")
    start.add_argument("--seed", help="64 hex digits (default: a fresh random seed)")
    start.set_defaults(handler=_rollout_start)
    set_ = rollout_sub.add_parser("set", parents=[server_opt], help="set the percent now")
    set_.add_argument("process", help=process_help)
    set_.add_argument("percent", type=PERCENT, help="0 to 100: the share of nodes to update")
    set_.set_defaults(handler=_rollout_set)
    for action in ("pause", "resume"):
        p = rollout_sub.add_parser(action, parents=[server_opt], help=f"{action} a rollout")
        p.add_argument("process", help=process_help)
        p.set_defaults(handler=_rollout_action, action=action)
    status = rollout_sub.add_parser("status", parents=[server_opt], help="show every rollout")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(handler=_rollout_status)


def _server_run(args: argparse.Namespace) -> int:
    import sqlalchemy as sa

    from . import startup
    from .auth import TOKEN_ENV, TokenError, load_admin_token
    from .runner import run_server
    from .settings import ServerSettings

    host, port = parse_listen(args.listen)
    if args.report_rate < 1:
        raise CommandError("--report-rate must be at least 1 report a minute", EXIT_USAGE)
    # Checked in the order that creates nothing on failure: arguments, the port, then
    # the data dir, the token and the database (see startup.py).
    try:
        public_url, warnings = startup.public_url_for(args.public_url, host, port)
        db_url = startup.parse_db_url(args.db) if args.db else None
        sock = startup.bind_listener(host, port)
    except ValueError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    except startup.StartupError as exc:
        raise CommandError(str(exc), EXIT_USAGE if exc.usage else 1) from None
    try:
        data_dir = args.data_dir or default_data_dir()
        token = None
        if args.admin_token_file is not None or os.environ.get(TOKEN_ENV, "").strip():
            try:  # a token given to us is only read: check it before creating anything
                token, generated = load_admin_token(args.admin_token_file, data_dir)
            except TokenError as exc:
                raise CommandError(str(exc), EXIT_USAGE) from None
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CommandError(f"cannot create --data-dir {data_dir}: {exc.strerror}") from None
        if db_url is None:
            db_url = sa.make_url(f"sqlite:///{data_dir / 'control-plane.db'}")
        shown = sa.make_url(args.db).render_as_string() if args.db else str(db_url)
        try:
            startup.wait_for_database(
                db_url, args.db_wait, shown=shown, on_retry=lambda m: _say(f"warning: {m}")
            )
            if token is None:
                token, generated = load_admin_token(args.admin_token_file, data_dir)
        except startup.StartupError as exc:
            raise CommandError(str(exc)) from None
        except TokenError as exc:
            raise CommandError(str(exc), EXIT_USAGE) from None
        settings = ServerSettings(
            db_url=db_url.render_as_string(hide_password=False),
            data_dir=data_dir,
            public_url=public_url,
            admin_token=token,
            ramp_tick=args.ramp_tick,
            poll_interval=args.poll_interval,
            report_rate_per_minute=args.report_rate,
            docs=args.docs,
        )
        if generated:
            _say(f"generated an admin token into {token.source}")
        else:
            _say(f"admin token from {token.source}")
        for warning in warnings:
            _say(f"warning: {warning}")
        try:
            return run_server(settings, host, port, sock)
        except sa.exc.SQLAlchemyError as exc:
            raise CommandError(f"database error at start ({shown}): {exc.args[0]}") from None
    finally:
        sock.close()


def _say(message: str) -> None:
    print(f"nodekeeper: {message}", file=sys.stderr)


def _client(args: argparse.Namespace) -> AdminClient:
    from .client import AdminClient, AdminClientError

    try:
        return AdminClient.from_environment(args.server)
    except AdminClientError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None


def _call(args: argparse.Namespace, fn):
    from .client import AdminClientError, PublishInputError

    client = _client(args)
    try:
        return fn(client)
    except PublishInputError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    except AdminClientError as exc:
        raise CommandError(str(exc)) from None
    finally:
        client.close()


def _parse_artifacts(items: list[str]) -> dict[str, str]:
    artifacts: dict[str, str] = {}
    for item in items:
        platform, sep, source = item.partition("=")
        if not sep or not platform or not source:
            raise CommandError(
                f"--artifact {item!r} must be OS_ARCH=PATH_OR_URL, e.g. "
                "windows_amd64=./storagenode_windows_amd64.zip",
                EXIT_USAGE,
            )
        if platform in artifacts:
            raise CommandError(f"--artifact {platform} is given twice", EXIT_USAGE)
        artifacts[platform] = source
    return artifacts


def _release_publish(args: argparse.Namespace) -> int:
    artifacts = _parse_artifacts(args.artifact)
    result = _call(args, lambda c: c.publish(args.process, args.version, artifacts))
    print(f"published {result['process']} {result['version']}")
    for platform, info in sorted(result["artifacts"].items()):
        print(f"  {platform}: {info['size']} bytes, sha256 {info['sha256']}")
    _print_notes(result)
    return 0


def _print_notes(result: dict) -> None:
    """The server's notes on what a change does that may surprise (stderr: not output)."""
    for note in result.get("notes") or ():
        _say(f"note: {note}")


def _minimum_set(args: argparse.Namespace) -> int:
    result = _call(
        args,
        lambda c: c.request(
            "PUT", f"/v1/admin/processes/{args.process}/minimum", json={"version": args.version}
        ),
    )
    print(f"minimum of {result['process']} is now {result['minimum']}")
    return 0


def _rollout_start(args: argparse.Namespace) -> int:
    body = {"version": args.version, "rate_per_day": args.rate}
    if args.seed:
        body["seed"] = args.seed
    result = _call(
        args, lambda c: c.request("POST", f"/v1/admin/processes/{args.process}/rollout", json=body)
    )
    pace = f"at {args.rate} % per day" if args.rate else "by hand (use `rollout set`)"
    print(f"rolling out {result['process']} {result['version']} {pace}; seed {result['seed']}")
    _print_notes(result)
    return 0


def _rollout_set(args: argparse.Namespace) -> int:
    result = _call(
        args,
        lambda c: c.request(
            "PUT",
            f"/v1/admin/processes/{args.process}/rollout/percent",
            json={"percent": args.percent},
        ),
    )
    print(f"{result['process']} {result['version']}: {result['percent']} % ({result['state']})")
    return 0


def _rollout_action(args: argparse.Namespace) -> int:
    result = _call(
        args,
        lambda c: c.request("POST", f"/v1/admin/processes/{args.process}/rollout/{args.action}"),
    )
    print(f"{result['process']} {result['version']}: {result['percent']} % ({result['state']})")
    return 0


def _rollout_status(args: argparse.Namespace) -> int:
    import json
    import shutil

    from .status_view import render_status

    rows = _call(args, lambda c: c.request("GET", "/v1/admin/status"))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(render_status(rows, width=shutil.get_terminal_size((80, 24)).columns), end="")
    return 0
