"""Where the window opens and how big: 800x600, or smaller on a screen where that and the
window's frame would not fit, centred in the part of the screen windows may use.

Tk's ``wm geometry WxH`` sizes the client area; the title bar and borders come on top,
and neither Windows nor X11 shrinks a window to the screen. On an 800x600 desktop (a
small VM, a remote session) 800x600 put the title bar and the status line off the screen,
with nothing to move or resize the window by. The screens scroll, so a shorter window
loses nothing. The layout's wrap lengths (``screens.FULL``, 740) need a client area at
least 776 pixels wide (784 on an 800-pixel screen); on narrower screens the right edge of
the longest lines is cut.

``fit`` is pure; ``work_area`` and ``frame_size`` ask the platform (Windows: the
desktop without the taskbar, and the frame of an ordinary window as the system draws it;
elsewhere Tk's screen size and an allowance, as X11 has no portable answer).
"""

from __future__ import annotations

import sys
import tkinter as tk
from dataclasses import dataclass

WIDTH, HEIGHT = 800, 600  # the client area the screens are laid out for
MIN_WIDTH, MIN_HEIGHT = 640, 480
# What a window manager adds around the client area where the system cannot say: about
# Windows 10/11's caption and borders at 100 % (23 + 2 x 8, 2 x 8 pixels); X11 title
# bars are shorter.
FRAME_WIDTH, FRAME_HEIGHT = 16, 40


@dataclass(frozen=True)
class Area:
    """A rectangle of the screen, in pixels."""

    left: int
    top: int
    width: int
    height: int


@dataclass(frozen=True)
class Placement:
    width: int
    height: int
    x: int
    y: int
    min_width: int
    min_height: int

    @property
    def geometry(self) -> str:
        """For ``wm geometry``: the client area's size, the frame's top-left corner."""
        return f"{self.width}x{self.height}+{self.x}+{self.y}"


def fit(work: Area, frame: tuple[int, int] = (FRAME_WIDTH, FRAME_HEIGHT)) -> Placement:
    """The window's size and position inside ``work`` with a ``frame`` (width, height:
    what the borders and title bar add) around it."""
    frame_width, frame_height = frame
    width = max(1, min(WIDTH, work.width - frame_width))
    height = max(1, min(HEIGHT, work.height - frame_height))
    x = work.left + max(0, (work.width - width - frame_width) // 2)
    y = work.top + max(0, (work.height - height - frame_height) // 2)
    return Placement(width, height, x, y, min(MIN_WIDTH, width), min(MIN_HEIGHT, height))


def frame_size() -> tuple[int, int]:
    """What the title bar and borders add to the client area: the system's own figure on
    Windows (its DPI and theme), the allowance elsewhere."""
    if sys.platform == "win32":
        found = _windows_frame()
        if found is not None:
            return found
    return FRAME_WIDTH, FRAME_HEIGHT


def work_area(root: tk.Misc) -> Area:
    """The part of the screen a window may use: without the taskbar on Windows."""
    if sys.platform == "win32":
        found = _windows_work_area()
        if found is not None:
            return found
    return Area(0, 0, root.winfo_screenwidth(), root.winfo_screenheight())


def _windows_frame() -> tuple[int, int] | None:
    import ctypes
    from ctypes import wintypes

    rect = wintypes.RECT(0, 0, 0, 0)
    ws_overlappedwindow = 0x00CF0000  # a top-level window with a caption and sizing borders
    if not ctypes.windll.user32.AdjustWindowRectEx(ctypes.byref(rect), ws_overlappedwindow, 0, 0):
        return None
    return rect.right - rect.left, rect.bottom - rect.top


def _windows_work_area() -> Area | None:
    import ctypes
    from ctypes import wintypes

    rect = wintypes.RECT()
    spi_getworkarea = 0x0030
    if not ctypes.windll.user32.SystemParametersInfoW(spi_getworkarea, 0, ctypes.byref(rect), 0):
        return None
    return Area(rect.left, rect.top, rect.right - rect.left, rect.bottom - rect.top)
