"""`nodekeeper quickstart`: quickstart's command group, registered by nodekeeper.cli.root.

Only the parser is built here; the handler imports the system (control plane, rich's live
view, httpx) when the command runs, so `nodekeeper run` and `--help` do not pay for it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nodekeeper.server.commands import DEFAULT_LISTEN


def register(sub: argparse._SubParsersAction) -> None:
    quickstart = sub.add_parser("quickstart", help="bring up a local system on defaults")
    quickstart.add_argument("--data-dir", type=Path, help="where the local system keeps state")
    quickstart.add_argument("--listen", default=DEFAULT_LISTEN, help="control plane HOST:PORT")
    quickstart.add_argument(
        "--plain", action="store_true", default=None, help="print events as lines (no live view)"
    )
    quickstart.set_defaults(handler=_quickstart)


def _quickstart(args: argparse.Namespace) -> int:
    from nodekeeper.quickstart.run import run_quickstart

    return run_quickstart(args.data_dir, args.listen, plain=args.plain)
