"""A private X display (Xvfb) for tests that need one, a minimal system tray in it, and
screenshots of it.

- ``xvfb()`` starts Xvfb on a free display number (``-displayfd``: Xvfb picks it and says
  so once it accepts connections) and kills it afterwards.
- ``SystemTray`` is a stand-in for a desktop's notification area, which a bare Xvfb does
  not have: it owns the ``_NET_SYSTEM_TRAY_S0`` selection and docks the windows that ask
  (freedesktop system tray spec: a SYSTEM_TRAY_REQUEST_DOCK client message), reparenting
  them into its own window at 24 x 24 as a panel's tray would. It is the one fake here.
- ``screenshot()`` reads a window's (or the screen's) pixels back as a Pillow image.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

SLOT = 24  # the tray's icon slot, in pixels (GNOME's and XFCE's default)


@contextlib.contextmanager
def xvfb(width: int = 800, height: int = 600, timeout: float = 15) -> Iterator[str]:
    """A fresh Xvfb; yields its DISPLAY (":N")."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (make system-packages installs it)")
    read, write = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write), "-screen", "0", f"{width}x{height}x24",
         "-nolisten", "tcp", "-noreset"],
        pass_fds=(write,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    os.close(write)
    try:
        number = b""
        deadline = time.monotonic() + timeout
        while not number.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([read], [], [], left)[0]:
                raise AssertionError(f"Xvfb did not report its display within {timeout:g} s")
            chunk = os.read(read, 16)
            if not chunk:
                raise AssertionError(f"Xvfb exited ({proc.wait()}) before opening a display")
            number += chunk
        yield f":{number.decode().strip()}"
    finally:
        os.close(read)
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class SystemTray:
    """A minimal XEMBED system tray on ``display`` (see the module's docstring)."""

    def __init__(self, display: str) -> None:
        from Xlib import X
        from Xlib import display as xdisplay

        self._x = xdisplay.Display(display)
        screen = self._x.screen()
        self.window = screen.root.create_window(
            0, 0, 8 * SLOT, SLOT, 0, screen.root_depth,
            event_mask=X.SubstructureNotifyMask, background_pixel=screen.black_pixel,
        )  # fmt: skip
        self.window.map()
        self._opcode = self._x.intern_atom("_NET_SYSTEM_TRAY_OPCODE")
        selection = self._x.intern_atom(f"_NET_SYSTEM_TRAY_S{self._x.get_default_screen()}")
        self.window.set_selection_owner(selection, X.CurrentTime)
        self._x.flush()
        self.docked: list[int] = []  # window ids, in the order they asked
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="test-system-tray", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        from Xlib import X

        fd = self._x.fileno()
        while not self._stop.is_set():
            try:
                if not self._x.pending_events() and not select.select([fd], [], [], 0.1)[0]:
                    continue
                event = self._x.next_event()
            except Exception:  # the display went away first: nothing left to dock into
                return
            if event.type == X.ClientMessage and event.client_type == self._opcode:
                _format, data = event.data
                if data[1] == 0:  # SYSTEM_TRAY_REQUEST_DOCK, window id in data[2]
                    self._dock(data[2])

    def _dock(self, window_id: int) -> None:
        if window_id in self.docked:  # pystray asks again at every show; a tray ignores it
            return
        icon = self._x.create_resource_object("window", window_id)
        icon.reparent(self.window, len(self.docked) * SLOT, 0)
        icon.configure(width=SLOT, height=SLOT)
        icon.map()
        self._x.flush()
        self.docked.append(window_id)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._x.close()


def screenshot(display: str, window: int | None = None) -> Any:
    """The pixels of ``window`` (the whole screen when None) as a Pillow RGB image."""
    from PIL import Image
    from Xlib import X
    from Xlib import display as xdisplay

    x = xdisplay.Display(display)
    try:
        drawable = x.screen().root if window is None else x.create_resource_object("window", window)
        geometry = drawable.get_geometry()
        raw = drawable.get_image(0, 0, geometry.width, geometry.height, X.ZPixmap, 0xFFFFFFFF)
        return Image.frombytes("RGB", (geometry.width, geometry.height), raw.data, "raw", "BGRX")
    finally:
        x.close()


def window_name(display: str, window: int) -> str | None:
    from Xlib import display as xdisplay

    x = xdisplay.Display(display)
    try:
        name = x.create_resource_object("window", window).get_wm_name()
        return name.decode() if isinstance(name, bytes) else name
    finally:
        x.close()


def _live_windows(x: Any) -> Any:
    """Every window under the screen's root, depth first, with its name. Programs open
    and close windows while we walk (Wine's installer, a starting tray app): a window that
    is gone by the time we ask about it (BadWindow, or BadDrawable/BadMatch for its
    geometry) is skipped, not an error."""
    from Xlib import error

    pending = [x.screen().root]
    while pending:
        window = pending.pop()
        try:
            children = window.query_tree().children
        except (error.BadWindow, error.BadDrawable, error.BadMatch):
            continue
        for child in children:
            try:
                name = child.get_wm_name()
            except (error.BadWindow, error.BadDrawable, error.BadMatch):
                continue
            pending.append(child)
            yield child, name.decode() if isinstance(name, bytes) else name


def window_names(display: str) -> list[str]:
    """The names of the screen's top-level windows (and their children: Wine's X11
    driver and window managers nest them)."""
    from Xlib import display as xdisplay

    x = xdisplay.Display(display)
    try:
        return [name for _, name in _live_windows(x) if name]
    finally:
        x.close()


def window_rect(display: str, name: str) -> tuple[int, int, int, int] | None:
    """Where the largest viewable window whose name contains ``name`` is on the screen:
    (x, y, width, height), relative to the screen's top-left; None when there is none.
    Under Wine without a window manager a top-level window's X window is its client area
    (no one draws a frame); in a Wine virtual desktop (`explorer /desktop=...`) it is the
    whole window, the frame Wine draws included."""
    from Xlib import X, error
    from Xlib import display as xdisplay

    x = xdisplay.Display(display)
    try:
        root = x.screen().root
        found: list[tuple[int, int, int, int]] = []
        for child, title in _live_windows(x):
            if not title or name not in title:
                continue
            try:
                if child.get_attributes().map_state != X.IsViewable:
                    continue
                geometry = child.get_geometry()
                origin = child.translate_coords(root, 0, 0)
            except (error.BadWindow, error.BadDrawable, error.BadMatch):
                continue  # closed while we looked
            found.append((-origin.x, -origin.y, geometry.width, geometry.height))
        return max(found, key=lambda r: r[2] * r[3]) if found else None
    finally:
        x.close()


def wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)
