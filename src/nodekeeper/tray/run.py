"""Starting the window: one instance per session, the icon, the keeper's client, Tk.

Split from ``commands`` so that the tests start the same thing the command starts, with
their own display, runtime directory and "last seen" file.
"""

from __future__ import annotations

import logging
import tkinter as tk
from pathlib import Path
from typing import TYPE_CHECKING

from nodekeeper.cli.errors import EXIT_FAILURE, EXIT_OK, CommandError

if TYPE_CHECKING:
    from nodekeeper.keeper.config import KeeperConfig
    from nodekeeper.tray.app import TrayApp
    from nodekeeper.tray.icon_port import MakeIcon

log = logging.getLogger(__name__)
# `--screenshot` gives the keeper this long to answer before it writes what it has.
SCREENSHOT_WAIT_MS = 15_000


def icon_factories(root: tk.Tk, real_tray: bool = True) -> list[MakeIcon]:
    """pystray's icon when its module loads here, then the Tk fallback that always works.
    pystray raises more than ImportError when it cannot load (no display, no backend)."""
    from functools import partial

    from nodekeeper.tray.fallback_icon import TkFallbackIcon, fallback_factory

    factories: list[MakeIcon] = []
    if real_tray:
        try:
            from nodekeeper.tray.pystray_icon import make_pystray_icon
        except Exception as exc:
            log.info("no tray icon (pystray): %s; the window title shows the state", exc)
        else:
            # Where pystray has no notifications (its xorg backend), the Tk toast (072).
            toasts = TkFallbackIcon(root)
            factories.append(partial(make_pystray_icon, notify_fallback=toasts.notify))
    factories.append(fallback_factory(root))
    return factories


def build(
    root: tk.Tk,
    config: KeeperConfig,
    config_path: Path | None,
    last_seen_path: Path | None = None,
    real_tray: bool = True,
    poll_ms: int | None = None,
) -> TrayApp:
    from nodekeeper.keeper.client import KeeperClient
    from nodekeeper.keeper.control_token import TOKEN_FILE
    from nodekeeper.tray import last_seen
    from nodekeeper.tray.app import POLL_MS, TrayApp, TrayEnv

    env = TrayEnv(
        client=KeeperClient.from_config(config),
        logs_dir=config.logs_path(),
        last_seen_path=last_seen_path or last_seen.default_path(),
        config_path=config_path,
        token_path=config.state_path() / TOKEN_FILE,
        poll_ms=poll_ms or POLL_MS,
    )
    return TrayApp(root, env, icon_factories(root, real_tray))


def run_window(
    config: KeeperConfig,
    config_path: Path | None,
    screenshot_dir: Path | None = None,
    instance_dir: Path | None = None,
) -> int:
    from nodekeeper.tray import single_instance

    holder: list[TrayApp] = []

    def on_raise() -> None:  # the listener's thread: only queue
        if holder:
            holder[0].worker.call_soon(holder[0].raise_window)

    instance = None
    if screenshot_dir is None:  # a screenshot run may go beside a running window
        try:
            instance = single_instance.claim(
                instance_dir or single_instance.default_dir(), on_raise
            )
        except single_instance.AlreadyRunning as exc:
            print(f"nodekeeper tray: {exc}")
            return EXIT_OK
    try:
        try:
            root = tk.Tk(className="nodekeeper")
        except tk.TclError as exc:
            raise CommandError(
                f"cannot open a window: {exc} (no desktop session? the tray app needs one)",
                EXIT_FAILURE,
            ) from None
        app = build(root, config, config_path, real_tray=screenshot_dir is None)
        holder.append(app)
        if screenshot_dir is not None:
            _screenshots_when_ready(app, screenshot_dir)
        root.mainloop()
    finally:
        if instance is not None:
            instance.close()
    return EXIT_OK


def _screenshots_when_ready(app: TrayApp, directory: Path) -> None:
    from nodekeeper.tray.shots import capture_screens

    waited = [0]

    def check() -> None:
        if app.polls == 0 and waited[0] < SCREENSHOT_WAIT_MS:
            waited[0] += 100
            app.root.after(100, check)
            return
        for path in capture_screens(app, directory):
            print(path)
        app.quit()

    app.root.after(100, check)
