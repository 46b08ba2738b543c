"""The tray icon through pystray: the notification-area icon on Windows (Shell_NotifyIcon)
and on X11 desktops (XEMBED tray, or AppIndicator/GTK where installed), implementing
``icon_port.TrayIcon`` (decision 072).

``make_pystray_icon`` never raises: it returns None when no backend can show an icon
here (pystray or Pillow missing, no display, no system tray on this desktop, the icon's
loop failing to start within ``START_TIMEOUT``), and the app then uses its Tk fallback.

Threads. pystray runs its own loop; we start it with ``Icon.run`` in a daemon thread of
ours rather than ``run_detached``, which for win32 and xorg only starts a thread itself
(plain, not daemon): pystray's setup thread inherits the daemon flag from the thread
that starts it, and a loop that failed to start (no display under Wine: CreateWindowEx
fails in the loop thread) leaves that setup thread waiting forever, which must not keep
the process alive at exit. Every change to the icon (image, tooltip, balloon, removal)
goes through a queue to pystray's setup thread, which applies them in order: the Tk
thread that calls ``show``/``notify``/``stop`` never waits on pystray (its xorg backend
blocks the caller, without a deadline, until its loop thread has done the work).

Notifications: Windows has balloons (pystray's win32 ``notify``); pystray's xorg backend
has none (``HAS_NOTIFICATION`` False). There ``notify`` hands the message to
``notify_fallback`` when one is given (the app gives its Tk toast) and otherwise drops it;
``can_notify`` says which it is.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nodekeeper.tray.icon_state import IconState

if TYPE_CHECKING:
    from nodekeeper.tray.icon_port import MenuItem

log = logging.getLogger(__name__)

NAME = "nodekeeper"
# The icon's loop must be up (window created, icon added) by then. Generous: the tray app
# starts at logon, when the machine is busiest, and giving up means the Tk fallback for
# the whole session. Only a failing start waits it out.
START_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0  # and gone this long after stop()


@dataclass(frozen=True)
class _Show:
    state: IconState


@dataclass(frozen=True)
class _Notify:
    title: str
    message: str


_STOP = object()


class PystrayIcon:
    """A running pystray icon. Build it with :func:`make_pystray_icon`."""

    def __init__(
        self,
        icon: Any,
        notify_fallback: Callable[[str, str], None] | None,
    ) -> None:
        self._icon = icon
        self._notify_fallback = notify_fallback
        self._commands: queue.Queue[object] = queue.Queue()
        self._ready = threading.Event()
        self._ended = threading.Event()
        self._settled = threading.Event()  # ready or ended, whichever comes first
        self._stopped = False
        self.start_error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="nodekeeper-tray-icon", daemon=True)

    @property
    def can_notify(self) -> bool:
        """Whether ``notify`` shows something: the platform's balloons, or the fallback."""
        return bool(self._icon.HAS_NOTIFICATION) or self._notify_fallback is not None

    @property
    def backend(self) -> str:
        """pystray's backend: "win32", "xorg", "appindicator", "gtk", ..."""
        return str(type(self._icon).__module__).rsplit("._", 1)[-1]

    @property
    def running(self) -> bool:
        return self._ready.is_set() and not self._ended.is_set()

    # The loop thread and pystray's setup thread.

    def _run(self) -> None:
        # pystray records its loop thread only after it has released the setup thread,
        # whose first change could then find no loop thread to compare with: record it
        # first (it is this thread: ``run`` runs the loop here).
        self._icon._thread = threading.current_thread()
        try:
            self._icon.run(setup=self._apply_commands)
        except BaseException as exc:  # the loop could not start or died: report, never raise
            self.start_error = exc
            log.warning("tray icon: pystray's loop ended with an error: %s", exc)
        finally:
            self._close_wakeups()
            self._ended.set()
            self._settled.set()

    def _apply_commands(self, icon: Any) -> None:
        """pystray's setup thread: show the icon, then apply changes until stopped."""
        try:
            icon.visible = True
        except Exception as exc:
            self.start_error = exc
            log.warning("tray icon: could not be shown: %s", exc)
            with contextlib.suppress(Exception):
                icon.stop()
            return
        self._ready.set()
        self._settled.set()
        while True:
            command = self._commands.get()
            if command is _STOP:
                # From this thread pystray's stop() does not wait for itself; the loop
                # thread removes the icon (Shell_NotifyIcon NIM_DELETE) on its way out.
                icon.stop()
                return
            try:
                self._apply(icon, command)
            except Exception:  # one failed change must not end the icon
                log.warning("tray icon: could not apply %r", command, exc_info=True)

    def _apply(self, icon: Any, command: object) -> None:
        from nodekeeper.tray.icon_image import icon_image

        if isinstance(command, _Show):
            state = command.state
            icon.icon = icon_image(state.colour, state.unread)
            icon.title = _tooltip(state.tooltip)
        elif isinstance(command, _Notify):
            icon.notify(command.message, command.title)

    def _wait_started(self, timeout: float) -> bool:
        """True once the icon is shown; False if the loop ended or the time ran out."""
        self.thread.start()
        self._settled.wait(timeout)
        return self._ready.is_set() and not self._ended.is_set()

    # icon_port.TrayIcon

    def show(self, state: IconState) -> None:
        if not self._stopped:
            self._commands.put(_Show(state))

    def notify(self, title: str, message: str) -> None:
        if self._stopped:
            return
        if self._icon.HAS_NOTIFICATION:
            self._commands.put(_Notify(title, message))
        elif self._notify_fallback is not None:
            self._notify_fallback(title, message)
        else:
            log.info("tray icon: no notifications on this desktop; not shown: %s", title)

    def stop(self, timeout: float = STOP_TIMEOUT) -> bool:
        """Remove the icon and end its loop; True if it ended within ``timeout``."""
        if not self._stopped:
            self._stopped = True
            self._commands.put(_STOP)
        if not self.thread.is_alive():
            return True
        self.thread.join(timeout)
        ended = not self.thread.is_alive()
        if not ended:
            log.warning("tray icon: pystray's loop did not end within %.0f s", timeout)
        return ended

    def _close_wakeups(self) -> None:
        wakeups = getattr(self._icon, "_nodekeeper_wakeups", None)
        if wakeups is not None:
            wakeups.close()


def _tooltip(text: str) -> str:
    # Windows truncates a notification icon's tip at 127 characters (NOTIFYICONDATAW's
    # szTip is 128 wide characters); cut it ourselves, visibly, instead.
    return text if len(text) <= 127 else text[:126] + "…"


def make_pystray_icon(
    items: list[MenuItem],
    default: Callable[[], None],
    *,
    notify_fallback: Callable[[str, str], None] | None = None,
    start_timeout: float = START_TIMEOUT,
) -> PystrayIcon | None:
    """A tray icon with this menu (label, action) whose click runs ``default``, shown in
    the "stopped" state until the first ``show``; None when no icon can be shown here."""
    try:
        import pystray

        from nodekeeper.tray.icon_image import icon_image
    except Exception as exc:  # ImportError, or a backend failing at import (no display)
        log.info("tray icon: pystray unavailable here: %s", exc)
        return None
    backend = str(pystray.Icon.__module__)
    if backend.endswith("._xorg") and not _x11_has_tray():
        log.info("tray icon: this X11 desktop has no system tray to dock an icon in")
        return None
    menu = pystray.Menu(
        # Invisible: a click on the icon runs the default item, the menu lists the rest.
        pystray.MenuItem("Open", _call(default), default=True, visible=False),
        *(pystray.MenuItem(label, _call(action)) for label, action in items),
    )
    try:
        from nodekeeper.tray.icon_state import COLOURS

        icon = pystray.Icon(NAME, icon_image(COLOURS["stopped"]), "nodekeeper", menu)
        if backend.endswith("._xorg"):
            _xorg_one_thread_per_connection(icon)
    except Exception as exc:  # xorg: no display to connect to
        log.info("tray icon: pystray could not create an icon: %s", exc)
        return None
    tray = PystrayIcon(icon, notify_fallback)
    if tray._wait_started(start_timeout):
        return tray
    tray.stop()
    log.info("tray icon: not shown (%s)", tray.start_error or "its loop did not start in time")
    return None


def _call(action: Callable[[], None]) -> Callable[[], None]:
    # pystray inspects a callback's arity; a plain no-argument function keeps it simple.
    def run() -> None:
        action()

    return run


def _xorg_one_thread_per_connection(icon: Any) -> None:
    """Keep pystray's X connection to its loop thread alone.

    pystray's xorg backend runs every change (show, title, image, stop) in its loop
    thread: the calling thread sends a client message to the icon's window and flushes,
    on the connection the loop thread is blocked reading. python-xlib's locking loses a
    wake-up when two threads do that at once: the loop thread waited forever for a reply
    (get_geometry while redrawing) or never sent its window's destruction, in about one
    start or stop in five under test. So the other threads get a connection of their own
    for those messages (the X server delivers a client message with an empty event mask
    to the window's owner, whichever connection sent it), and a flush of pystray's
    connection from any thread but the loop's does nothing: the loop thread sends what it
    queued when it next waits for events. Written against pystray 0.19 (the pin in
    pyproject); test_pystray_icon.py starts and stops icons repeatedly to hold it to that.
    """
    wakeups = _Wakeups()
    icon._send_message = wakeups.send
    icon._display = _LoopThreadFlushes(icon._display, icon)
    icon._nodekeeper_wakeups = wakeups  # closed when the loop ends (PystrayIcon._run)


class _Wakeups:
    """Our own X connection, for the client messages other threads send to pystray's."""

    def __init__(self) -> None:
        from Xlib import display as xdisplay

        self._x: Any = xdisplay.Display()
        self._lock = threading.Lock()

    def send(self, window: Any, client_type: int, l0: int = 0, l1: int = 0, l2: int = 0,
             l3: int = 0) -> None:  # fmt: skip
        from Xlib import X
        from Xlib.protocol import event

        with self._lock:
            if self._x is None:
                return  # the icon has ended
            target = self._x.create_resource_object("window", window.id)
            message = event.ClientMessage(
                window=target, client_type=client_type,
                data=(32, (X.CurrentTime, l0, l1, l2, l3)),
            )  # fmt: skip
            target.send_event(message, event_mask=X.NoEventMask)
            self._x.flush()

    def close(self) -> None:
        with self._lock:
            if self._x is not None:
                with contextlib.suppress(Exception):
                    self._x.close()
                self._x = None


class _LoopThreadFlushes:
    """pystray's X connection, whose ``flush`` works only in the icon's loop thread."""

    def __init__(self, display: Any, icon: Any) -> None:
        self._display = display
        self._icon = icon

    def flush(self) -> None:
        if threading.current_thread() is getattr(self._icon, "_thread", None):
            self._display.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._display, name)


def _x11_has_tray() -> bool:
    """Whether a system tray owns this screen's ``_NET_SYSTEM_TRAY_S<n>`` selection (the
    freedesktop system tray spec). pystray's xorg backend does not retry docking later,
    and without a tray it logs an error and shows nothing."""
    try:
        from Xlib import X, display

        connection = display.Display()
    except Exception:
        return False
    try:
        screen = connection.get_default_screen()
        atom = connection.intern_atom(f"_NET_SYSTEM_TRAY_S{screen}")
        return bool(connection.get_selection_owner(atom) != X.NONE)
    finally:
        connection.close()
