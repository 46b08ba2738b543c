"""`python -m nodekeeper.keeper --config FILE`: the keeper alone, for service managers.

Same as `nodekeeper run --config FILE`, without building the whole `nodekeeper` CLI: that
imports every command group (control plane, release tools) and costs the long-running
service ~15 MB of memory it never uses. The systemd unit and the Windows service use this.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nodekeeper import __version__
from nodekeeper.cli.errors import exit_code_of
from nodekeeper.keeper.commands import run_command
from nodekeeper.launcher.closed_stdout import run_guarded


def main(argv: list[str] | None = None) -> int:
    return run_guarded(lambda: _main(argv))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m nodekeeper.keeper",
        description="Run the keeper (the same as `nodekeeper run`), for service managers.",
    )
    parser.add_argument("--version", action="version", version=f"nodekeeper {__version__}")
    parser.add_argument("--config", type=Path, metavar="FILE", help="keeper config (TOML)")
    return parser


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    return exit_code_of(lambda: run_command(args))


if __name__ == "__main__":
    sys.exit(main())
