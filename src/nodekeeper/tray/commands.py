"""`nodekeeper tray`: the operator's window, one per user session.

``register(subparsers)`` adds the command to the `nodekeeper` parser. Without
``--config`` the window finds the keeper the installer set up: the MSI's
``%ProgramData%\\nodekeeper\\keeper.toml`` on Windows, ``/etc/nodekeeper/keeper.toml``
(the README's path) on Linux, and the keeper's defaults when that file does not exist.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nodekeeper.cli.errors import EXIT_OK, EXIT_USAGE, CommandError

LINUX_CONFIG = Path("/etc/nodekeeper/keeper.toml")


def register(subparsers: argparse._SubParsersAction) -> None:
    tray = subparsers.add_parser(
        "tray",
        help="the operator's window: status, problems, updates, settings, first-run setup",
        description="Show the node's status and problems, notify about trouble, and change "
        "the node's settings through the running keeper. One per user session: a second "
        "start shows the first one's window.",
    )
    tray.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help=f"the keeper's config (default: the installed one, {default_config_path()})",
    )
    tray.add_argument(
        "--open-dashboard",
        action="store_true",
        help="open the node's dashboard in the browser and exit",
    )
    tray.add_argument(
        "--screenshot",
        dest="screenshot_dir",
        type=Path,
        metavar="DIR",
        help="write a PNG of every screen into DIR once the keeper answered, then exit",
    )
    tray.set_defaults(handler=tray_command)


def default_config_path() -> Path:
    if sys.platform == "win32":
        import platformdirs

        return platformdirs.site_data_path("nodekeeper", appauthor=False) / "keeper.toml"
    return LINUX_CONFIG


def tray_command(args: argparse.Namespace) -> int:
    from nodekeeper.keeper.config import ConfigError, load_config

    shots = args.screenshot_dir
    if shots is not None and shots.exists() and not shots.is_dir():
        raise CommandError(f"--screenshot {shots}: is not a directory", EXIT_USAGE)
    path = args.config
    if path is None and default_config_path().exists():
        path = default_config_path()
    try:
        config = load_config(path)
    except ConfigError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    if args.open_dashboard:
        return _open_dashboard(config)
    from nodekeeper.tray.run import run_window

    return run_window(config, path, screenshot_dir=shots)


def _open_dashboard(config: object) -> int:
    import webbrowser

    from nodekeeper.keeper.client import KeeperClient, KeeperClientError

    client = KeeperClient.from_config(config)  # type: ignore[arg-type]
    try:
        url = client.status().get("dashboard_url")
    except KeeperClientError as exc:
        raise CommandError(str(exc)) from None
    if not url:
        raise CommandError(
            f"the keeper at {client.base_url} does not report the node's dashboard address"
        )
    if not webbrowser.open(url):
        raise CommandError(f"no browser found: open {url} yourself")
    print(f"opened {url}")
    return EXIT_OK
