"""The pystray tray icon on a real X display (Xvfb) with pystray's xorg backend.

A bare Xvfb has no notification area, so tests that need one start
``tests.xdisplay.SystemTray``, a minimal freedesktop system tray that docks icons as a
panel would. Everything else is real: pystray's own loop thread, its X window, the
pixels it draws and the name it sets, read back over a second X connection.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from PIL import ImageChops

from nodekeeper.tray.icon_state import COLOURS, IconState
from nodekeeper.tray.pystray_icon import PystrayIcon, make_pystray_icon
from tests.xdisplay import SLOT, SystemTray, screenshot, wait_for, window_name, xvfb

pytest.importorskip("Xlib")  # pystray's xorg backend needs it; `import pystray` itself
# connects to $DISPLAY, so it is imported only inside the tests, with the display set.


def rgb(colour: str) -> tuple[int, int, int]:
    return (int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16))


@pytest.fixture
def display(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("PYSTRAY_BACKEND", "xorg")  # never a desktop's AppIndicator here
    with xvfb() as name:
        monkeypatch.setenv("DISPLAY", name)
        yield name


@pytest.fixture
def tray(display: str) -> Iterator[SystemTray]:
    found = SystemTray(display)
    yield found
    found.close()


def centre(display: str, window: int) -> tuple[int, int, int]:
    image = screenshot(display, window)
    return tuple(image.getpixel((image.width // 2, image.height // 2)))  # type: ignore[return-value]


def test_the_icon_docks_shows_each_state_and_ends_on_stop(display: str, tray: SystemTray) -> None:
    icon = make_pystray_icon([("Restart the node", lambda: None)], lambda: None)
    assert isinstance(icon, PystrayIcon) and icon.backend == "xorg" and icon.running
    try:
        (window,) = wait_for(lambda: tray.docked, 5, "the icon to dock in the tray")
        # Before the first show: the "stopped" grey disc.
        wait_for(lambda: centre(display, window) == rgb(COLOURS["stopped"]), 5, "a grey icon")
        assert window_name(display, window) == "nodekeeper"

        icon.show(IconState("running", "nodekeeper: node 1.4.0 running"))
        wait_for(lambda: centre(display, window) == rgb(COLOURS["running"]), 5, "a green icon")
        wait_for(lambda: window_name(display, window) == "nodekeeper: node 1.4.0 running", 5,
                 "the tooltip")  # fmt: skip

        icon.show(IconState("attention", "nodekeeper: the firewall blocks the node's port"))
        wait_for(lambda: centre(display, window) == rgb(COLOURS["attention"]), 5, "a red icon")
        plain = screenshot(display, window)
        icon.show(IconState("attention", "nodekeeper: 2 unread problems", unread=2))
        wait_for(lambda: window_name(display, window) == "nodekeeper: 2 unread problems", 5,
                 "the tooltip")  # fmt: skip
        badged = wait_for(lambda: (s := screenshot(display, window)) != plain and s, 5, "a badge")
        # Only the top-right corner changed: the badge, not the disc.
        left, top, _right, bottom = ImageChops.difference(plain, badged).getbbox()
        assert left >= SLOT // 3 and top == 0 and bottom <= SLOT * 2 // 3, (left, top, bottom)
    finally:
        assert icon.stop(timeout=5)
    assert not icon.thread.is_alive() and not icon.running
    # pystray's window is gone from the display.
    from Xlib.error import BadDrawable, BadWindow

    with pytest.raises((BadWindow, BadDrawable)):
        window_name(display, window)
    icon.show(IconState("running", "after stop"))  # ignored, never raises
    assert icon.stop()  # a second stop is harmless


def test_a_click_on_the_icon_runs_the_default_action(display: str, tray: SystemTray) -> None:
    clicked = threading.Event()
    icon = make_pystray_icon([], clicked.set)
    assert icon is not None
    try:
        (window,) = wait_for(lambda: tray.docked, 5, "the icon to dock")
        # A click in the first moments after docking can be lost under CPU load (seen in
        # 6 of 15 runs beside two busy loops; a later click always ran: decision 072,
        # "Not done"). An operator clicks again; so does this test, up to a deadline.
        deadline = time.monotonic() + 30
        while not clicked.is_set() and time.monotonic() < deadline:
            click(display, window)
            clicked.wait(1)
        assert clicked.is_set(), "the default action did not run after clicks for 30 s"
    finally:
        assert icon.stop()


def test_icons_start_and_stop_again_and_again(display: str, tray: SystemTray) -> None:
    """The tray app starts one icon per session, but pystray's xorg backend shares an X
    connection between threads, which python-xlib can deadlock on (the icon's module
    says how it is kept apart): twenty starts and stops in a row, each within deadline."""
    for n in range(20):
        icon = make_pystray_icon([], lambda: None, start_timeout=5)
        assert icon is not None, f"start {n}"
        icon.show(IconState("running", f"round {n}"))
        assert icon.stop(timeout=5), f"stop {n}"


def click(display: str, window: int) -> None:
    """A left-button press sent to the icon's window, as the X server delivers a click."""
    from Xlib import X
    from Xlib import display as xdisplay
    from Xlib.protocol import event

    x = xdisplay.Display(display)
    try:
        target = x.create_resource_object("window", window)
        press = event.ButtonPress(
            time=X.CurrentTime, root=x.screen().root, window=target, same_screen=1,
            child=X.NONE, root_x=0, root_y=0, event_x=12, event_y=12, state=0, detail=1,
        )  # fmt: skip
        target.send_event(press, event_mask=0)  # 0: to the client that made the window
        x.flush()
    finally:
        x.close()


def test_without_notifications_the_message_goes_to_the_fallback(
    display: str, tray: SystemTray
) -> None:
    """pystray's xorg backend has no balloons: notify hands over to the app's fallback."""
    seen: list[tuple[str, str]] = []
    icon = make_pystray_icon([], lambda: None, notify_fallback=lambda t, m: seen.append((t, m)))
    assert icon is not None
    try:
        assert icon.can_notify
        icon.notify("Node offline", "The node stopped answering 5 minutes ago.")
        assert seen == [("Node offline", "The node stopped answering 5 minutes ago.")]
    finally:
        icon.stop()
    bare = make_pystray_icon([], lambda: None)
    assert bare is not None
    try:
        assert not bare.can_notify
        bare.notify("dropped", "no balloon and no fallback: logged, never raised")
    finally:
        bare.stop()


def test_no_icon_without_a_tray_or_without_a_display(
    display: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A display with no notification area (no SystemTray started): the app's fallback.
    assert make_pystray_icon([], lambda: None) is None
    # No display at all (a service session, ssh without X): None, not an exception.
    monkeypatch.delenv("DISPLAY")
    assert make_pystray_icon([], lambda: None) is None


def test_a_long_tooltip_is_cut_visibly_to_what_windows_keeps() -> None:
    from nodekeeper.tray.pystray_icon import _tooltip

    assert _tooltip("short") == "short"
    cut = _tooltip("x" * 200)
    assert len(cut) == 127 and cut.endswith("…")  # szTip: 128 wide characters with the NUL
