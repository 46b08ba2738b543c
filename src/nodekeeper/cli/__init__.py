"""The `nodekeeper` command (console script `nodekeeper.cli:main`, `python -m nodekeeper`).

The package has two modules, and imports flow down only:

- `root`: the root parser; it imports each command group's ``register(subparsers)``
  (nodekeeper.server.commands, nodekeeper.quickstart.commands, nodekeeper.keeper.commands).
- `errors`: CommandError, the exit codes and the one error line, imported by the groups.

`main` and `build_parser` here load the root only when called, so a command group
importing `nodekeeper.cli.errors` (which runs this file first) does not load the root and,
through it, every other group. The error names are re-exported for callers outside the
package (tests, scripts); code inside nodekeeper imports them from `nodekeeper.cli.errors`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from nodekeeper.cli.errors import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_STDOUT_CLOSED,
    EXIT_USAGE,
    CommandError,
)

if TYPE_CHECKING:
    import argparse

__all__ = [
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_STDOUT_CLOSED",
    "EXIT_USAGE",
    "CommandError",
    "build_parser",
    "main",
]


def main(argv: Sequence[str] | None = None) -> int:
    """Run `nodekeeper ARGV...` and return its exit code (see nodekeeper.cli.root)."""
    from nodekeeper.cli.root import main as root_main

    return root_main(argv)


def build_parser() -> argparse.ArgumentParser:
    """The whole `nodekeeper` parser, every command group registered."""
    from nodekeeper.cli.root import build_parser as root_build_parser

    return root_build_parser()
