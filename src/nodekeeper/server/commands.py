"""`nodekeeper server run` and the admin commands that talk to a control plane.

The control plane's command group: ``register(subparsers)`` adds `server` (`run`, `db`), `release`,
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


def _whole(low: int, high: int):
    """An argparse type: a whole number in [low, high]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from {low} to {high}")
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
        "--health-interval",
        type=POSITIVE_SECONDS,
        default=60.0,
        metavar="SECONDS",
        help="how often each replica judges the running rollouts (default %(default)s)",
    )
    run.add_argument(
        "--health-min-affected",
        type=_whole(1, 1_000_000),
        default=5,
        metavar="N",
        help="never pause a rollout on fewer failed nodes than this (default %(default)s)",
    )
    run.add_argument(
        "--health-margin",
        type=_number(0, 100, low_open=False, what="percentage points"),
        default=3.0,
        metavar="POINTS",
        help="pause only when the failure rate is this many points above the fleet's "
        "(default %(default)s)",
    )
    run.add_argument(
        "--health-alpha",
        type=_number(0, 1, low_open=True, what="a test level"),
        default=0.01,
        metavar="ALPHA",
        help="the one-sided test's level per look (default %(default)s; decision 075)",
    )
    run.add_argument(
        "--alerts-config",
        type=Path,
        metavar="FILE",
        help="TOML file with an [alerts] table (as keeper.toml's): where an auto-pause "
        "is told (webhook, push, e-mail)",
    )
    run.add_argument(
        "--trusted-proxy",
        action="append",
        default=[],
        metavar="ADDRESS",
        help="a reverse proxy (IP or network) whose X-Forwarded-For the reachability "
        "check believes; repeat for several (default: none, the TCP peer is the client)",
    )
    run.add_argument(
        "--reachability-per-source",
        type=_whole(1, 100_000),
        default=30,
        metavar="N",
        help="nodes one address may have dialled back per hour (default %(default)s)",
    )
    run.add_argument(
        "--tuf-online-keys",
        dest="tuf_online_keys_dir",
        type=Path,
        metavar="DIR",
        help="the online TUF keys (snapshot, timestamp) this server signs with: the "
        "--online-dir of `nodekeeper keys create`; read at each signing (decision 084)",
    )
    run.add_argument(
        "--tuf-interval",
        type=POSITIVE_SECONDS,
        default=60.0,
        metavar="SECONDS",
        help="how often each replica looks whether snapshot and timestamp are due a "
        "re-sign (default %(default)s)",
    )
    run.add_argument(
        "--docs",
        action="store_true",
        help="serve /docs and /redoc (they load Swagger UI and ReDoc from a CDN in your "
        "browser); /openapi.json is always served",
    )
    run.set_defaults(handler=_server_run)

    db_opts = argparse.ArgumentParser(add_help=False)
    db_opts.add_argument("--db", help="SQLAlchemy URL (default: the SQLite file in the data dir)")
    db_opts.add_argument("--data-dir", type=Path, help="the data dir of `server run`")
    db_opts.add_argument(
        "--db-wait",
        type=SECONDS,
        default=0.0,
        metavar="SECONDS",
        help="retry an unreachable database this long (default %(default)s)",
    )
    db = server_sub.add_parser("db", help="the control plane's database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    db_upgrade = db_sub.add_parser(
        "upgrade",
        parents=[db_opts],
        help="create or upgrade the schema now (`server run` also does it at start)",
    )
    db_upgrade.set_defaults(handler=_db_upgrade)
    db_current = db_sub.add_parser(
        "current", parents=[db_opts], help="show the schema revision; changes nothing"
    )
    db_current.set_defaults(handler=_db_current)

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
    publish.add_argument(
        "--targets-key",
        type=Path,
        metavar="FILE",
        help="the TUF targets key (a private key file of `nodekeeper keys create`): signs "
        "the release's artifacts; required once the control plane has a TUF root "
        f"(passphrase from ${'{'}NODEKEEPER_KEY_PASSPHRASE{'}'} or a prompt)",
    )
    from .keys_commands import add_trusted_root_option

    add_trusted_root_option(publish)
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
    start.add_argument(
        "--stages",
        metavar="PCT,PCT,...",
        help="a staged plan, e.g. 1,5,25,100: each stage is held --soak at least, then "
        "moves on when the health check says continue",
    )
    start.add_argument(
        "--doubling",
        action="store_true",
        help="the staged plan 1,2,4,8,16,32,64,100 (Storj's doubling guidance)",
    )
    start.add_argument("--soak", metavar="DURATION", help='each stage\'s hold, e.g. "6h", "30m"')
    start.set_defaults(handler=_rollout_start)
    set_ = rollout_sub.add_parser("set", parents=[server_opt], help="set the percent now")
    set_.add_argument("process", help=process_help)
    set_.add_argument("percent", type=PERCENT, help="0 to 100: the share of nodes to update")
    set_.set_defaults(handler=_rollout_set)
    helps = {
        "pause": "pause a rollout",
        "resume": "resume a paused rollout (also one the health check paused)",
        "abort": "stop offering a rollout: cursor to 0; nodes keep what they run",
    }
    for action, text in helps.items():
        p = rollout_sub.add_parser(action, parents=[server_opt], help=text)
        p.add_argument("process", help=process_help)
        p.set_defaults(handler=_rollout_action, action=action)
    status = rollout_sub.add_parser("status", parents=[server_opt], help="show every rollout")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(handler=_rollout_status)

    audit = sub.add_parser(
        "audit", parents=[server_opt], help="list the admin changes, newest first"
    )
    audit.add_argument(
        "--limit", type=_whole(1, 10_000), default=50, help="how many (1-10000, default 50)"
    )
    audit.add_argument("--json", action="store_true", help="print JSON")
    audit.set_defaults(handler=_audit)

    from .keys_commands import register as register_keys  # signed releases (084)

    register_keys(sub, server_opt)


def _server_run(args: argparse.Namespace) -> int:
    import sqlalchemy as sa

    from . import startup
    from .auth import TOKEN_ENV, TokenError, load_admin_token
    from .migrate import MigrationError
    from .runner import run_server
    from .settings import ServerSettings

    host, port = parse_listen(args.listen)
    online_keys = args.tuf_online_keys_dir
    if online_keys is not None and not online_keys.is_dir():
        raise CommandError(
            f"--tuf-online-keys {online_keys} is not a directory: give the --online-dir of "
            "`nodekeeper keys create`",
            EXIT_USAGE,
        )
    if args.report_rate < 1:
        raise CommandError("--report-rate must be at least 1 report a minute", EXIT_USAGE)
    health_rule = _health_rule(args)
    alerts = _alerts(args.alerts_config) if args.alerts_config else None
    from .reachability_rules import Limits, parse_trusted

    try:
        trusted = parse_trusted(args.trusted_proxy)
    except ValueError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
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
            health_interval=args.health_interval,
            health_rule=health_rule,
            alerts=alerts,
            trusted_proxies=trusted,
            reachability=Limits(per_source=args.reachability_per_source),
            tuf_online_keys=online_keys,
            tuf_interval=args.tuf_interval,
        )
        if generated:
            _say(f"generated an admin token into {token.source}")
        else:
            _say(f"admin token from {token.source}")
        for warning in warnings:
            _say(f"warning: {warning}")
        _say(
            f"dashboard: {startup.dashboard_url(public_url, host, port)} "
            "(log in with the admin token)"
        )
        try:
            return run_server(settings, host, port, sock)
        except MigrationError as exc:
            raise CommandError(f"the database at {shown}: {exc}") from None
        except sa.exc.SQLAlchemyError as exc:
            raise CommandError(f"database error at start ({shown}): {exc.args[0]}") from None
    finally:
        sock.close()


def _health_rule(args: argparse.Namespace):
    from .rollout_health import HealthRule

    try:
        return HealthRule(
            alpha=args.health_alpha,
            margin=args.health_margin / 100.0,
            min_affected=args.health_min_affected,
        )
    except ValueError as exc:
        raise CommandError(f"the health rule: {exc}", EXIT_USAGE) from None


def _alerts(path: Path):
    """The dispatcher for `--alerts-config FILE`; a bad file stops the start here, before
    anything is created."""
    from nodekeeper.alerts.debounce import DebouncePolicy
    from nodekeeper.alerts.dispatch import AlertDispatcher, channels_from_config
    from nodekeeper.alerts.secrets import SecretsError, read_secrets

    from .rollout_alerts import AlertsConfigError, load_alerts_config

    try:
        config, secrets_path = load_alerts_config(path)
        secrets = read_secrets(secrets_path) if secrets_path is not None else {}
        channels = channels_from_config(config, secrets)
    except AlertsConfigError as exc:
        raise CommandError(f"--alerts-config: {exc}", EXIT_USAGE) from None
    except SecretsError as exc:
        raise CommandError(f"--alerts-config {path}: {exc}", EXIT_USAGE) from None
    # No debouncing: each auto-pause fires once by the database's doing (decision 078).
    return AlertDispatcher(
        channels,
        DebouncePolicy(0.0),
        deadline_seconds=config.deadline_seconds,
        on_problem=lambda m: _say(f"warning: {m}"),
    )


def _db_target(args: argparse.Namespace) -> tuple[str, str]:
    """The database of `server db ...` (as `server run` would pick it), reachable, and
    how to name it in messages; only the data dir of the default SQLite file is created."""
    import sqlalchemy as sa

    from . import startup

    try:
        db_url = startup.parse_db_url(args.db) if args.db else None
    except startup.StartupError as exc:
        raise CommandError(str(exc), EXIT_USAGE if exc.usage else 1) from None
    if db_url is None:
        data_dir = args.data_dir or default_data_dir()
        if data_dir.exists() and not data_dir.is_dir():
            raise CommandError(f"--data-dir {data_dir} is a file, not a directory", EXIT_USAGE)
        db_url = sa.make_url(f"sqlite:///{data_dir / 'control-plane.db'}")
        if args.db_command == "upgrade":
            try:
                data_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise CommandError(f"cannot create --data-dir {data_dir}: {exc.strerror}") from None
        elif not (data_dir / "control-plane.db").is_file():
            raise CommandError(
                f"no database at {data_dir / 'control-plane.db'}: pass --db URL or the "
                "--data-dir of `server run`"
            )
    shown = sa.make_url(args.db).render_as_string() if args.db else str(db_url)
    try:
        startup.wait_for_database(
            db_url, args.db_wait, shown=shown, on_retry=lambda m: _say(f"warning: {m}")
        )
    except startup.StartupError as exc:
        raise CommandError(str(exc)) from None
    return db_url.render_as_string(hide_password=False), shown


def _db_upgrade(args: argparse.Namespace) -> int:
    import sqlalchemy as sa

    from .migrate import Action, MigrationError, upgrade

    url, shown = _db_target(args)
    try:
        before = upgrade(url)
    except MigrationError as exc:
        raise CommandError(f"the database at {shown}: {exc}") from None
    except sa.exc.SQLAlchemyError as exc:
        raise CommandError(f"database error ({shown}): {exc.args[0]}") from None
    head = ", ".join(before.heads)
    print(
        {
            Action.NOTHING: f"{shown}: already at schema revision {head}",
            Action.CREATE: f"{shown}: created at schema revision {head}",
            Action.ADOPT: f"{shown}: adopted the previous release's tables as the baseline, "
            f"now at schema revision {head}",
            Action.UPGRADE: f"{shown}: upgraded from {', '.join(before.revisions)} to {head}",
        }[before.action]
    )
    return 0


def _db_current(args: argparse.Namespace) -> int:
    import sqlalchemy as sa

    from .migrate import Action, status

    url, shown = _db_target(args)
    try:
        found = status(url)
    except sa.exc.SQLAlchemyError as exc:
        raise CommandError(f"database error ({shown}): {exc.args[0]}") from None
    if found.action is Action.REFUSE_NEWER:
        raise CommandError(f"the database at {shown}: {found.describe()}")
    print(f"{shown}: {found.describe()}")
    return 0


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
    signer = trusted = None
    if args.trusted_root is not None and args.targets_key is None:
        from .keys_commands import read_trusted_root

        read_trusted_root(args.trusted_root, args.trusted_root)  # a bad file is named first
        raise CommandError("--trusted-root is used only with --targets-key", EXIT_USAGE)
    if args.targets_key is not None:
        from .keys_commands import read_trusted_root
        from .tuf_keys import KeyFileError, ask_passphrase, load_signer

        try:  # asked before anything is uploaded
            signer = load_signer(args.targets_key, ask_passphrase)
        except KeyFileError as exc:
            raise CommandError(f"--targets-key: {exc}", EXIT_USAGE) from None
        trusted = read_trusted_root(args.trusted_root, args.targets_key)
    result = _call(
        args,
        lambda c: c.publish(
            args.process, args.version, artifacts, targets_key=signer, trusted_root=trusted
        ),
    )
    signed = (
        f" (signed: targets v{result['targets_version']})" if result.get("targets_version") else ""
    )
    print(f"published {result['process']} {result['version']}{signed}")
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


def _plan_body(args: argparse.Namespace) -> dict:
    """The staged plan's part of the start request; the server checks the plan itself
    (ascending, ending at 100, not with --rate), this only parses the words."""
    from nodekeeper.units import InvalidDurationError, parse_duration

    staged = args.stages is not None or args.doubling
    if not staged:
        if args.soak is not None:
            raise CommandError("--soak goes with a staged plan: add --stages or --doubling", 2)
        return {}
    if args.stages is not None and args.doubling:
        raise CommandError("give either --stages or --doubling, not both", EXIT_USAGE)
    if args.rate is not None:
        raise CommandError(
            "give either --rate (a linear ramp) or --stages/--doubling (a staged plan), not both",
            EXIT_USAGE,
        )
    if args.soak is None:
        raise CommandError(
            "a staged plan needs --soak: how long each stage is held at least, e.g. --soak 6h",
            EXIT_USAGE,
        )
    try:
        soak = float(parse_duration(args.soak))
    except InvalidDurationError as exc:
        raise CommandError(f"--soak {args.soak!r}: {exc}", EXIT_USAGE) from None
    if args.doubling:
        return {"doubling": True, "soak_seconds": soak}
    try:
        stages = [float(part) for part in args.stages.split(",")]
    except ValueError:
        raise CommandError(
            f"--stages {args.stages!r} must be percents separated by commas, e.g. 1,5,25,100",
            EXIT_USAGE,
        ) from None
    return {"stages": stages, "soak_seconds": soak}


def _rollout_start(args: argparse.Namespace) -> int:
    body = {"version": args.version, "rate_per_day": args.rate}
    plan = _plan_body(args)
    if plan:
        del body["rate_per_day"]
        body |= plan
    if args.seed:
        body["seed"] = args.seed
    result = _call(
        args, lambda c: c.request("POST", f"/v1/admin/processes/{args.process}/rollout", json=body)
    )
    pace = f"at {args.rate} % per day" if args.rate else "by hand (use `rollout set`)"
    if result.get("plan"):
        stages = ", ".join(f"{s:g}" for s in result["plan"]["stages"])
        pace = f"in stages {stages} %, each held {result['plan']['soak_seconds']:g} s at least"
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
    version = result.get("version") or result.get("target")  # abort answers a status row
    print(f"{result['process']} {version}: {result['percent']} % ({result['state']})")
    if args.action == "abort":
        print(f"no longer offered; nodes that installed {version} keep it")
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


def _audit(args: argparse.Namespace) -> int:
    import json
    import shutil

    from .audit_view import audit_lines

    entries = _call(
        args, lambda c: c.request("GET", "/v1/admin/audit", params={"limit": args.limit})
    )
    if args.json:
        print(json.dumps(entries, indent=2))
        return 0
    width = shutil.get_terminal_size((80, 24)).columns
    print("\n".join(audit_lines(entries, width)))
    return 0
