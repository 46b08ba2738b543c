"""The icon that always works: the state in the window's title, notifications as a small
window in the bottom-right corner of the screen that closes itself.

Used when pystray cannot show an icon (no system tray on this desktop, no pystray) and
by the tests. Runs on the Tk thread only, like everything that touches widgets.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from tkinter import ttk

from nodekeeper.tray.icon_port import MakeIcon, MenuItem, TrayIcon
from nodekeeper.tray.icon_state import IconState

TOAST_MS = 8000
TOAST_WIDTH = 360
MARGIN = 16
MAX_TOASTS = 3  # older ones close when a fourth comes: the Problems screen keeps them all


class TkFallbackIcon:
    def __init__(self, root: tk.Tk, title: str = "nodekeeper") -> None:
        self.root = root
        self.title = title
        self.state: IconState | None = None
        self.toasts: list[tk.Toplevel] = []

    def show(self, state: IconState) -> None:
        self.state = state
        marks = {"running": "●", "updating": "◐", "attention": "▲", "stopped": "○"}
        self.root.title(f"{marks[state.kind]} {state.tooltip}")

    def notify(self, title: str, message: str) -> None:
        while len(self.toasts) >= MAX_TOASTS:
            self._close(self.toasts[0])
        toast = tk.Toplevel(self.root)
        toast.title(title)
        toast.overrideredirect(True)  # no frame: a notification, not a window to manage
        toast.attributes("-topmost", True)
        frame = ttk.Frame(toast, padding=12, style="Toast.TFrame", relief="solid", borderwidth=1)
        frame.pack(fill="both", expand=True)
        ttk.Label(frame, text=title, style="ToastTitle.TLabel", wraplength=TOAST_WIDTH - 24).pack(
            anchor="w"
        )
        ttk.Label(frame, text=message, style="Toast.TLabel", wraplength=TOAST_WIDTH - 24).pack(
            anchor="w", pady=(4, 0)
        )
        for widget in (toast, frame, *frame.winfo_children()):
            widget.bind("<Button-1>", lambda _e, t=toast: self._close(t))
        self.toasts.append(toast)
        self._place()
        toast.after(TOAST_MS, lambda: self._close(toast))

    def _place(self) -> None:
        """Stack the toasts upwards from the bottom-right corner."""
        bottom = self.root.winfo_screenheight() - MARGIN - 40  # above a panel/taskbar
        for toast in reversed(self.toasts):
            toast.update_idletasks()
            height = toast.winfo_reqheight()
            x = self.root.winfo_screenwidth() - TOAST_WIDTH - MARGIN
            bottom -= height
            toast.geometry(f"{TOAST_WIDTH}x{height}+{x}+{bottom}")
            bottom -= 8

    def _close(self, toast: tk.Toplevel) -> None:
        if toast in self.toasts:
            self.toasts.remove(toast)
            toast.destroy()
            self._place()

    def stop(self) -> None:
        for toast in list(self.toasts):
            self._close(toast)


def fallback_factory(root: tk.Tk) -> MakeIcon:
    """A :data:`MakeIcon` for this window (the fallback has no menu: the window has every
    action on its screens)."""

    def make(_menu: list[MenuItem], _default: Callable[[], None]) -> TrayIcon | None:
        return TkFallbackIcon(root)

    return make
