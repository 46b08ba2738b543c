"""The `nodekeeper service` command group: `unit`, `install`, `uninstall` (Linux, systemd).

``register(subparsers)`` adds it to the `nodekeeper` parser (nodekeeper.cli.root). Every
input is checked before anything changes, and a refusal says what was wrong and what to
give instead. On Windows the service comes with the MSI, and these commands say so.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

from nodekeeper.cli.errors import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, CommandError
from nodekeeper.service import systemd

# useradd's own rule for portable names (shadow-utils), at most 32 characters.
_USER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


def register(subparsers: argparse._SubParsersAction) -> None:
    service = subparsers.add_parser(
        "service",
        help="run the keeper as a Linux service (systemd)",
        description="The systemd unit that runs the launcher (which runs the keeper, which "
        "runs the node) as a dedicated system user, restarted always, sandboxed, and "
        "stopped in order. On Windows the MSI installs the service.",
    )
    sub = service.add_subparsers(dest="service_command", metavar="COMMAND", required=True)

    unit = sub.add_parser(
        "unit",
        help="print the unit (no root needed; for packagers and for reading)",
        description="Print the unit `install` would write, from the same checked inputs.",
    )
    _unit_options(unit)
    unit.set_defaults(handler=unit_command)

    install = sub.add_parser(
        "install",
        help="write the unit, make the user and data dir, enable and start it (root)",
        description=f"Write {systemd.UNIT_DIR / systemd.UNIT_NAME}, create the system "
        "user if it is missing, create the keeper's data dir owned by it, then "
        "`systemctl enable --now` (when systemd runs this machine). Run it again after "
        "changing data_dir or [stop] timeout_seconds in the config.",
    )
    _unit_options(install)
    _root_option(install)
    install.set_defaults(handler=install_command)

    uninstall = sub.add_parser(
        "uninstall",
        help="stop and disable the service and remove the unit; data and user stay (root)",
        description="`systemctl disable --now`, then remove the unit. The data dir, the "
        "node's storage and the system user are kept.",
    )
    _root_option(uninstall)
    uninstall.set_defaults(handler=uninstall_command)


def _unit_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        required=True,
        metavar="FILE",
        help="the keeper's config (TOML) the service runs with; it must set data_dir",
    )
    parser.add_argument(
        "--user",
        default=systemd.DEFAULT_USER,
        metavar="NAME",
        help="the system user the service runs as; install creates it if missing "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--storage-dir",
        type=Path,
        action="append",
        default=[],
        dest="storage_dir",
        metavar="DIR",
        help="a directory the node stores its data in, made writable for the service "
        "(everything else but the data dir is read-only); repeat for several",
    )
    parser.add_argument(
        "--python",
        type=Path,
        default=Path(sys.executable),
        metavar="FILE",
        help="the interpreter with nodekeeper installed that runs the launcher "
        "(default: the one running this command, %(default)s)",
    )


def _root_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--root",
        type=Path,
        dest="root_dir",
        metavar="DIR",
        help="act on the tree under DIR instead of this machine: only the unit file in "
        "DIR/etc/systemd/system changes; no user, directories or systemctl, and no root "
        "needed (for building packages)",
    )


# -- checks ------------------------------------------------------------------------------


def refuse_off_linux(platform: str = sys.platform) -> None:
    if platform == "win32":
        raise CommandError(
            "on Windows the nodekeeper service is installed by the MSI installer; "
            "`nodekeeper service` manages the Linux systemd unit",
            EXIT_USAGE,
        )
    if not platform.startswith("linux"):
        raise CommandError(f"`nodekeeper service` needs Linux with systemd (this is {platform})")


def require_root(args: argparse.Namespace, euid: int | None = None) -> None:
    """Root is needed to change the machine; with --root DIR only DIR is written."""
    if args.root_dir is not None:
        return
    euid = os.geteuid() if euid is None else euid
    if euid != 0:
        command = f"nodekeeper service {args.service_command}"
        raise CommandError(
            f"`{command}` changes the system ({systemd.UNIT_DIR}, a system user, "
            f"systemctl): run it as root, e.g. `sudo {command} ...`; nothing was changed",
            EXIT_FAILURE,
        )


def _path(path: Path, flag: str) -> Path:
    """``path`` normalized (systemd ignores ``..`` in some settings) without following
    symlinks, or a CommandError that says why the unit cannot carry it."""
    normal = Path(os.path.normpath(path))
    problem = systemd.path_problem(normal)
    if problem:
        raise CommandError(f"{flag} {path}: {problem}", EXIT_USAGE)
    return normal


def _persistent(path: Path, flag: str) -> Path:
    """The node's identity and data must survive a reboot."""
    path = _path(path, flag)
    if systemd.is_under(path, systemd.TEMP_DIRS):
        raise CommandError(
            f"{flag} {path}: temporary directories are emptied at boot or by age; give "
            "a directory that keeps the node's identity and data",
            EXIT_USAGE,
        )
    return path


def _python(path: Path) -> Path:
    path = _path(path, "--python")
    if path.is_dir():
        raise CommandError(f"--python {path}: is a directory; give the interpreter", EXIT_USAGE)
    if not path.exists():
        raise CommandError(
            f"--python {path}: no such file; give the Python that has nodekeeper installed",
            EXIT_USAGE,
        )
    if not os.access(path, os.X_OK):
        raise CommandError(f"--python {path}: not an executable program", EXIT_USAGE)
    return path


def _storage_dirs(paths: list[Path], must_exist: bool) -> tuple[Path, ...]:
    normal = [_path(path, "--storage-dir") for path in paths]
    for path in normal:
        if path.exists() and not path.is_dir():
            raise CommandError(f"--storage-dir {path}: is not a directory", EXIT_USAGE)
        _persistent(path, "--storage-dir")
        if must_exist and not path.exists():
            raise CommandError(
                f"--storage-dir {path}: does not exist; mount the disk or create it (owned "
                "by the service user) first",
                EXIT_USAGE,
            )
    return tuple(normal)


def _root_dir(args: argparse.Namespace) -> Path | None:
    root = args.root_dir
    if root is not None and not root.is_dir():
        raise CommandError(f"--root {root}: is not a directory", EXIT_USAGE)
    return root


def unit_spec(args: argparse.Namespace, *, installing: bool) -> systemd.UnitSpec:
    """The unit's inputs from the command line, every one checked; CommandError names the
    first bad one. The config is read last, so a refusal names the flag it is about."""
    python = _python(args.python)
    storage = _storage_dirs(args.storage_dir, must_exist=installing)
    if not _USER_NAME.fullmatch(args.user):
        raise CommandError(
            f"--user {args.user!r}: a system user name is lower-case letters, digits, _ "
            "and -, starting with a letter or _, at most 32 characters",
            EXIT_USAGE,
        )
    config_path = _path(args.config, "--config")
    from nodekeeper.keeper.config import ConfigError, load_config

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    if config.data_dir is None:
        raise CommandError(
            f'{config_path}: set data_dir (e.g. data_dir = "/var/lib/nodekeeper"): the '
            f"service runs as {args.user}, and without it the keeper would keep its data in "
            "that user's home",
            EXIT_USAGE,
        )
    data_dir = _persistent(config.data_path(), f"{config_path}: data_dir")
    node_config_dir = _persistent(config.node_config_path(), f"{config_path}: node.config_dir")
    account = systemd.lookup_account(args.user)
    from nodekeeper import __version__

    return systemd.UnitSpec(
        python=python,
        config=config_path,
        data_dir=data_dir,
        node_config_dir=node_config_dir,
        storage_dirs=storage,
        user=args.user,
        # An existing user keeps its primary group; a new one gets its own (useradd -U).
        group=account.group if account else args.user,
        node_stop_seconds=config.stop.timeout_seconds,
        version=__version__,
        # A venv's python is a symlink; what the service must reach is where it points.
        read_paths=tuple({python.resolve()} - {python}),
    )


# -- commands ----------------------------------------------------------------------------


def unit_command(args: argparse.Namespace) -> int:
    refuse_off_linux()
    spec = unit_spec(args, installing=False)
    try:
        sys.stdout.write(systemd.render_unit(spec))
    except systemd.UnitInputError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    return EXIT_OK


def host_for(root: Path | None) -> systemd.Host:
    if root is None:
        return systemd.Host()
    return systemd.Host(unit_dir=root / systemd.UNIT_DIR.relative_to("/"), manage=False)


def install_command(args: argparse.Namespace) -> int:
    refuse_off_linux()
    require_root(args)
    root = _root_dir(args)
    spec = unit_spec(args, installing=root is None)
    return _carry_out(lambda: systemd.install(spec, host_for(root)))


def uninstall_command(args: argparse.Namespace) -> int:
    refuse_off_linux()
    require_root(args)
    root = _root_dir(args)
    return _carry_out(lambda: systemd.uninstall(host_for(root)))


def _carry_out(step: Callable[[], systemd.Report]) -> int:
    """Run install or uninstall and print its report; a failure is one line."""
    try:
        report = step()
    except systemd.UnitInputError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    except systemd.HostCommandError as exc:
        raise CommandError(str(exc), EXIT_FAILURE) from None
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        raise CommandError(f"cannot write{where}: {exc.strerror or exc}", EXIT_FAILURE) from None
    for line in report.done:
        print(line)
    for line in report.warnings:
        print(f"nodekeeper: warning: {line}", file=sys.stderr)
    return EXIT_OK
