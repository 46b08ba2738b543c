"""The `nodekeeper` command. Each command group lives in its own module and registers here."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from nodekeeper import __version__
from nodekeeper.launcher.closed_stdout import run_guarded

# Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error (argparse's own).
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class CommandError(Exception):
    """A failure with a message for the user; ``exit_code`` says how the command ends."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


Registrar = Callable[[argparse._SubParsersAction], None]


def _registrars() -> list[Registrar]:
    # Imported here so that `nodekeeper --help` stays fast and each group stays optional.
    from nodekeeper.server import commands as server_commands

    registrars: list[Registrar] = [server_commands.register]
    try:
        from nodekeeper.keeper import commands as keeper_commands
    except ImportError:
        pass
    else:
        registrars.append(keeper_commands.register)
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
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or EXIT_OK)
    except CommandError as exc:
        print(f"nodekeeper: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
