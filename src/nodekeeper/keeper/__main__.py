"""`python -m nodekeeper.keeper --config FILE`: the keeper alone, for service managers.

Same as `nodekeeper run --config FILE`, without building the whole `nodekeeper` CLI: that
imports every command group (control plane, release tools) and costs the long-running
service ~15 MB of memory it never uses. The systemd unit and the Windows service use this.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nodekeeper.cli import CommandError
from nodekeeper.keeper.commands import run_command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nodekeeper.keeper")
    parser.add_argument("--config", type=Path, metavar="FILE", help="keeper config (TOML)")
    args = parser.parse_args(argv)
    try:
        return run_command(args)
    except CommandError as exc:
        print(f"nodekeeper: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
