"""Screenshots of the window (``nodekeeper tray --screenshot DIR``, ``make screenshots``
and the window tests): each screen opened in turn and grabbed from the screen.

Pillow's ImageGrab reads the X server named by the window's own display on Linux (so a
test's Xvfb, not whatever ``DISPLAY`` says) and the desktop on Windows.
"""

from __future__ import annotations

import sys
import tkinter as tk
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

    from nodekeeper.tray.app import TrayApp


def grab(window: tk.Misc) -> Image.Image:
    """The pixels of ``window`` as it is on the screen now."""
    from PIL import ImageGrab

    window.update()
    x, y = window.winfo_rootx(), window.winfo_rooty()
    box = (x, y, x + window.winfo_width(), y + window.winfo_height())
    if sys.platform == "win32" or sys.platform == "darwin":
        return ImageGrab.grab(bbox=box, all_screens=True)
    return ImageGrab.grab(bbox=box, xdisplay=window.winfo_screen())


def slug(title: str) -> str:
    return title.split(" (")[0].lower().replace(" ", "-")


def capture_screens(app: TrayApp, directory: Path) -> list[Path]:
    """Open every screen the window has now (the wizard only while the node needs setup)
    and write ``<screen>.png`` for each; returns the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for screen in app.screens():
        if app.notebook.tab(screen.frame, "state") == "hidden":
            continue
        app.notebook.select(screen.frame)
        if screen is app.problems_screen and app.problems_screen.visible:
            app.problems_screen.tree.selection_set("0")  # the details pane, filled
        path = directory / f"{slug(screen.title)}.png"
        grab(app.root).save(path)
        written.append(path)
    return written
