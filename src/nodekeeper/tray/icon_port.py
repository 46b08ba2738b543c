"""The seam between the tray app and whatever shows its icon and notifications.

The app never talks to a tray library directly: it asks a :data:`MakeIcon` factory for a
:class:`TrayIcon`, giving it the menu (label, action) and the default action (a click on
the icon: open the window). Two factories exist: the pystray one
(``tray.pystray_icon.make_pystray_icon``: a real icon, balloons through the platform) and
the Tk fallback (``tray.fallback_icon``: the state in the window's title, notifications
as a small window in the screen corner), which always works.

Threads: a factory's callbacks may run on a thread of the tray library (pystray runs its
own loop). They must only hand work to the Tk thread (the app gives the factory
callbacks that put onto its queue); the app calls ``show``/``notify``/``stop`` from the
Tk thread, so an implementation that needs its own thread marshals them itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from nodekeeper.tray.icon_state import IconState


class TrayIcon(Protocol):
    def show(self, state: IconState) -> None:
        """Show the state: the icon's colour and its tooltip."""

    def notify(self, title: str, message: str) -> None:
        """Tell the operator something now (a balloon, a toast)."""

    def stop(self) -> None:
        """Remove the icon; called once, when the app ends."""


MenuItem = tuple[str, Callable[[], None]]
# (menu items, default action) -> an icon, or None when this kind of icon cannot be shown
# here (no tray on this desktop, no display): the app then uses the next factory.
MakeIcon = Callable[[list[MenuItem], Callable[[], None]], "TrayIcon | None"]
