"""The ``storagenode`` command: ``setup``, ``run``, ``version`` and ``info``.

Heavy imports happen inside each command so that ``version`` (the keeper's preflight)
and the start of ``run`` stay fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from storagenode import exitcodes
from storagenode.buildinfo import VERSION
from storagenode.config import DEFAULT_CONTROL_LISTEN, DEFAULT_LISTEN


def _default_config_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_config_dir("storagenode", appauthor=False))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="storagenode", description="Reference storage node: a small piece store."
    )
    parser.add_argument("--version", action="version", version=f"storagenode {VERSION}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    setup = sub.add_parser("setup", help="create the config and identity (once)")
    setup.add_argument("--config-dir", type=Path, help="where config and identity go")
    setup.add_argument("--storage-dir", type=Path, required=True, help="where pieces go")
    setup.add_argument("--allocated", required=True, help='space to offer, e.g. "500 GB"')
    setup.add_argument("--listen", default=DEFAULT_LISTEN, help="public HOST:PORT")
    setup.add_argument(
        "--control-listen", default=DEFAULT_CONTROL_LISTEN, help="loopback HOST:PORT for pulse"
    )
    setup.add_argument("--wallet", help="payout address: 0x + 40 hex digits (EIP-55 checked)")
    setup.add_argument("--email", help="the operator's email address, for notices")
    setup.add_argument("--external-address", help="HOST:PORT where the network reaches this node")
    setup.add_argument(
        "--identity-dir",
        type=Path,
        help="use the identity.key in this folder (copied) instead of making a new one",
    )

    config_dir_help = "where `setup` wrote config and identity (default: the user's config dir)"
    run = sub.add_parser("run", help="serve pieces until stopped")
    run.add_argument("--config-dir", type=Path, help=config_dir_help)
    run.add_argument(
        "--log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="overrides log_level in config.toml",
    )

    info = sub.add_parser("info", help="print the node ID and config as JSON")
    info.add_argument("--config-dir", type=Path, help=config_dir_help)

    sub.add_parser("version", help="print the version")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from nodekeeper.launcher.closed_stdout import run_guarded

    return run_guarded(lambda: _main(argv))


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except BrokenPipeError:
        raise  # stdout's reader has gone (`| head`): main() ends quietly
    except Exception:
        # Still one JSON line, so the keeper files it as an ERROR and not as noise.
        from storagenode.log import configure

        configure().exception("unexpected failure")
        return exitcodes.FAILURE


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "version":
        print(f"Version: {VERSION}")
        return exitcodes.OK
    config_dir: Path = args.config_dir or _default_config_dir()
    if args.command == "run":
        from storagenode.runner import run

        return run(config_dir, args.log_level)
    if args.command == "setup":
        return _setup(args, config_dir)
    if args.command == "info":
        return _info(config_dir)
    raise AssertionError(args.command)  # pragma: no cover - argparse rejects others


def _setup(args: argparse.Namespace, config_dir: Path) -> int:
    from storagenode.log import configure
    from storagenode.setup import SetupRefusedError, SetupRequest, run_setup

    log = configure("INFO")
    request = SetupRequest(
        config_dir=config_dir,
        storage_dir=args.storage_dir,
        allocated=args.allocated,
        listen=args.listen,
        control_listen=args.control_listen,
        wallet=args.wallet,
        email=args.email,
        external_address=args.external_address,
        identity_dir=args.identity_dir,
    )
    try:
        config, node_id = run_setup(request)
    except SetupRefusedError as exc:
        log.error(f"setup refused: {exc}")
        return exitcodes.SETUP_REFUSED
    print(f"node ID: {node_id}")
    print(f"config: {config.config_dir / 'config.toml'}")
    print(f"storage: {config.storage_dir} ({config.allocated_bytes} bytes allocated)")
    for key, value in config.operator.items():
        print(f"{key.replace('_', ' ')}: {value}")
    return exitcodes.OK


def _info(config_dir: Path) -> int:
    import json

    from storagenode.config import NotConfiguredError, load_config
    from storagenode.identity import IdentityError, load_identity, node_id_text
    from storagenode.log import configure

    log = configure("INFO")
    try:
        config = load_config(config_dir)
        _key, raw_id = load_identity(config.identity_path)
    except (NotConfiguredError, IdentityError) as exc:
        log.error(str(exc))
        return exitcodes.NOT_CONFIGURED
    document = {"version": VERSION, "node_id": node_id_text(raw_id), **config.to_toml_dict()}
    del document["config_format"]
    json.dump(document, sys.stdout, indent=2)
    print()
    return exitcodes.OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
