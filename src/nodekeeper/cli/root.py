"""The `nodekeeper` command's root parser: the program's options and its command groups.

Each command group lives with the code it drives and adds its own subcommands through
``register(subparsers)``: the control plane's (`server`, `release`, `minimum`,
`rollout`), quickstart's, the keeper's (`run`, `status`, `update`, `firewall`) and the
service's (`service`). Imports flow one
way: this module imports the groups, the groups import only `nodekeeper.cli.errors`, and
nothing but `nodekeeper.cli` (the console script) and `python -m nodekeeper` imports this
module (checked by the import contracts in pyproject.toml).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from nodekeeper import __version__
from nodekeeper.cli.errors import exit_code_of
from nodekeeper.launcher.closed_stdout import run_guarded

Registrar = Callable[[argparse._SubParsersAction], None]


def _registrars() -> list[Registrar]:
    """The command groups in the order `nodekeeper --help` lists them."""
    # Imported here so that `nodekeeper --version` stays fast and each group stays
    # optional; each group's module imports its heavy parts in its handlers.
    from nodekeeper.quickstart import commands as quickstart_commands
    from nodekeeper.server import commands as server_commands

    registrars: list[Registrar] = [server_commands.register, quickstart_commands.register]
    try:
        from nodekeeper.keeper import commands as keeper_commands
        from nodekeeper.keeper import firewall_commands
    except ImportError:
        pass
    else:
        registrars += [keeper_commands.register, firewall_commands.register]
    from nodekeeper.service import commands as service_commands
    from nodekeeper.tray import commands as tray_commands

    registrars += [service_commands.register, tray_commands.register]
    return registrars


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nodekeeper",
        description="Keeps a storage node up to date and alive; steers staged rollouts.",
    )
    parser.add_argument("--version", action="version", version=f"nodekeeper {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in _registrars():
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_guarded(lambda: _main(argv))


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    return exit_code_of(lambda: args.handler(args))
