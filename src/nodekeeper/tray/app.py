"""The tray app's window: the screens, the status poll, notifications and actions.

Threads: everything here runs on the Tk thread except the jobs handed to the
``Worker`` (HTTP to the keeper with the client's deadlines, reading the error index,
the settings checks that touch the disk or resolve a name). The poll is one job at a
time, scheduled again with ``after`` when it is done, so a keeper that does not answer
costs one request's deadline per poll and never a frozen window: the banner says the
keeper is not answering and the screens keep the last known state.

Actions need the control token. Without it (an ordinary user) the window says plainly
that administrator rights are needed and how to get them (``admin``); on Windows it
offers the same action as an elevated ``nodekeeper`` command.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import time
import tkinter as tk
import webbrowser
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from tkinter import font as tkfont
from tkinter import ttk
from typing import Any

from nodekeeper.keeper.client import (
    KeeperClient,
    KeeperClientError,
    NotAuthorized,
    Rejected,
)
from nodekeeper.logs.error_index import read_errors_since
from nodekeeper.tray import admin, forms, last_seen, notify_rules, placement
from nodekeeper.tray.icon_port import MakeIcon, TrayIcon
from nodekeeper.tray.icon_state import COLOURS, icon_state
from nodekeeper.tray.screens import (
    BOLD_FONT,
    ProblemsScreen,
    Screen,
    SettingsScreen,
    StatusScreen,
    UpdatesScreen,
    WizardScreen,
    say,
)
from nodekeeper.tray.status_screen import check_answer
from nodekeeper.tray.unread import Problem, newest_time, problems, unread
from nodekeeper.tray.worker import Done, Worker

log = logging.getLogger(__name__)

WIDTH, HEIGHT = placement.WIDTH, placement.HEIGHT  # on a screen with room for it
POLL_MS = 3000


@dataclass
class TrayEnv:
    """What the window needs from outside: the keeper, where its logs are, where this
    user's "last seen" is; the config and token paths only for messages."""

    client: KeeperClient
    logs_dir: Path
    last_seen_path: Path
    config_path: Path | None = None
    token_path: Path | None = None
    poll_ms: int = POLL_MS
    clock: Callable[[], float] = time.time
    notify_policy: notify_rules.NotifyPolicy = field(default_factory=notify_rules.NotifyPolicy)


@dataclass
class Polled:
    status: dict[str, Any] | None
    status_error: str | None
    settings: dict[str, Any] | None
    settings_error: str | None
    entries: list[dict[str, Any]]
    errors_error: str | None


class TrayApp:
    def __init__(self, root: tk.Tk, env: TrayEnv, make_icons: Sequence[MakeIcon]) -> None:
        self.root = root
        self.env = env
        self.client = env.client
        self.status: dict[str, Any] | None = None
        self.settings: dict[str, Any] | None = None
        self.entries: list[dict[str, Any]] = []
        self.items: list[Problem] = []
        self.last_seen = last_seen.load(env.last_seen_path)
        self.notify_state = notify_rules.NotifyState()
        self.polls = 0  # completed polls (tests wait on it)
        self.notices: list[notify_rules.Notice] = []  # every notice raised, newest last
        self._polling = False
        self._poll_id: str | None = None
        self._closed = False

        root.title("nodekeeper")
        # 800x600 where it fits with its frame, smaller on a small screen (the screens
        # scroll): the title bar and the status line stay on the screen.
        where = placement.fit(placement.work_area(root), placement.frame_size())
        root.geometry(where.geometry)
        root.minsize(where.min_width, where.min_height)
        _styles(root)
        self.banner = ttk.Label(
            root,
            text="",
            style="Banner.TLabel",
            anchor="w",
            padding=(10, 6),
            wraplength=where.width - 30,
        )
        self.footer = ttk.Label(root, text="", style="Hint.TLabel", anchor="w", padding=(10, 2))
        self.footer.pack(side="bottom", fill="x")
        self.notebook = ttk.Notebook(root)
        self.notebook.pack(side="top", fill="both", expand=True, padx=6, pady=6)
        self.status_screen = StatusScreen(self.notebook, self)
        self.problems_screen = ProblemsScreen(self.notebook, self)
        self.updates_screen = UpdatesScreen(self.notebook, self)
        self.settings_screen = SettingsScreen(self.notebook, self)
        self.wizard = WizardScreen(self.notebook, self)
        for screen in self.screens():
            self.notebook.add(screen.frame, text=screen.title)
        self.notebook.hide(self.wizard.frame)  # until the keeper says the node needs setup

        self.worker = Worker(root)
        self.icon = self._make_icon(make_icons)
        root.protocol("WM_DELETE_WINDOW", self.close_window)
        self.show_banner(None)
        self.poll()

    # -- the icon ------------------------------------------------------------------------

    def _make_icon(self, factories: Sequence[MakeIcon]) -> TrayIcon:
        # The icon's callbacks may run on the tray library's thread: they only queue.
        menu = [
            ("Open", lambda: self.worker.call_soon(self.raise_window)),
            ("Problems", lambda: self.worker.call_soon(lambda: self.open_screen("Problems"))),
            ("Check for updates", lambda: self.worker.call_soon(self.check_now)),
            ("Quit", lambda: self.worker.call_soon(self.quit)),
        ]
        default = menu[0][1]
        for make in factories:
            try:
                icon = make(menu, default)
            except Exception as exc:  # a tray library that fails here: use the next one
                log.warning("tray icon %r not available: %s", make, exc)
                continue
            if icon is not None:
                self.tray_is_real = not isinstance(icon, _fallback_class())
                return icon
        raise RuntimeError("no icon factory gave an icon (the Tk fallback always should)")

    # -- the window ----------------------------------------------------------------------

    def screens(self) -> list[Screen]:
        return [
            self.status_screen,
            self.problems_screen,
            self.updates_screen,
            self.settings_screen,
            self.wizard,
        ]

    def open_screen(self, title: str) -> None:
        self.raise_window()
        for screen in self.screens():
            if screen.title == title:
                if self.notebook.tab(screen.frame, "state") == "hidden":
                    self.notebook.add(screen.frame)
                self.notebook.select(screen.frame)
                return
        raise ValueError(f"no screen {title!r}")

    def raise_window(self) -> None:
        self.root.deiconify()
        self.root.lift()
        with contextlib.suppress(tk.TclError):
            self.root.focus_force()

    def close_window(self) -> None:
        """The window's close button: hide it when a tray icon brings it back, else keep it
        minimised (notifications need the app running); Quit ends the app."""
        if getattr(self, "tray_is_real", False):
            self.root.withdraw()
        else:
            self.root.iconify()

    def quit(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._poll_id is not None:
            self.root.after_cancel(self._poll_id)
        self.worker.close()
        with contextlib.suppress(Exception):
            self.icon.stop()
        self.root.destroy()

    def show_banner(self, text: str | None, kind: str = "error") -> None:
        if not text:
            self.banner.pack_forget()
            return
        self.banner.configure(text=text, style=f"Banner{kind.capitalize()}.TLabel")
        if not self.banner.winfo_ismapped():
            self.banner.pack(side="top", fill="x", before=self.notebook)

    # -- polling -------------------------------------------------------------------------

    def poll(self) -> None:
        """One status poll on the worker; the next is scheduled when it is done."""
        self._poll_id = None
        if self._polling or self._closed:
            return
        self._polling = True
        since = max((e["timestamp"] for e in self.entries), default=0.0)
        self.worker.submit(lambda: self._fetch(since), self._polled)

    def _fetch(self, since: float) -> Polled:
        """On a worker thread: status, settings and new error-index entries."""
        status = settings = None
        status_error = settings_error = errors_error = None
        try:
            status = self.client.status()
        except KeeperClientError as exc:
            status_error = str(exc)
        if status is not None:
            try:
                settings = self.client.settings()
            except KeeperClientError as exc:
                settings_error = str(exc)
        entries: list[dict[str, Any]] = []
        try:
            entries = read_errors_since(self.env.logs_dir, since)
        except OSError as exc:
            errors_error = (
                f"cannot read the error index in {self.env.logs_dir}: {exc.strerror or exc}"
            )
        return Polled(status, status_error, settings, settings_error, entries, errors_error)

    def _polled(self, done: Done[Polled]) -> None:
        self._polling = False
        if self._closed:
            return
        try:
            if done.error is not None:  # a bug in _fetch: say it, keep polling
                self.show_banner(f"could not read the keeper's state: {done.error!r}")
            else:
                assert done.value is not None
                self._show_polled(done.value)
        finally:
            self.polls += 1
            self._poll_id = self.root.after(self.env.poll_ms, self.poll)

    def _show_polled(self, polled: Polled) -> None:
        now = self.env.clock()
        if polled.status is not None:
            self.status = polled.status
        if polled.status_error:
            self.show_banner(
                _sentence(polled.status_error)
                + " The screens show the last known state; the window keeps trying."
            )
        elif polled.errors_error:
            self.show_banner(polled.errors_error, "warning")
        else:
            self.show_banner(None)
        self.status_screen.show(polled.status if polled.status is not None else None, now)
        self.updates_screen.show(polled.status, now)
        self._show_settings(polled)
        fresh = problems(polled.entries)
        if fresh:
            self.entries += polled.entries
            self.items = problems(self.entries)
        self._show_problems()
        notices, self.notify_state = notify_rules.decide(
            self.notify_state,
            polled.status,
            unread(fresh, self.last_seen),
            now,
            self.env.notify_policy,
        )
        for notice in notices:
            self.notices.append(notice)
            self.icon.notify(notice.title, notice.message)
        self.icon.show(icon_state(polled.status, len(unread(self.items, self.last_seen))))
        self.footer.configure(
            text=f"keeper {self.client.base_url} · updated {time.strftime('%H:%M:%S')}"
        )

    def _show_settings(self, polled: Polled) -> None:
        if polled.settings is None:
            if polled.settings_error and polled.status is not None:
                say(self.settings_screen.message, polled.settings_error, ok=False)
            return
        self.settings = polled.settings
        if polled.settings.get("needs_setup"):
            if self.notebook.tab(self.wizard.frame, "state") == "hidden":
                self.notebook.add(self.wizard.frame)
                self.notebook.select(self.wizard.frame)
        else:
            if self.notebook.tab(self.wizard.frame, "state") != "hidden":
                was_shown = self.notebook.select() == str(self.wizard.frame)
                self.notebook.hide(self.wizard.frame)
                if was_shown:  # set up (by this window or another way): show the node
                    self.notebook.select(self.status_screen.frame)
            self.settings_screen.show(polled.settings.get("values") or {})

    def _show_problems(self) -> None:
        self.problems_screen.show(self.items, self.last_seen)
        count = len(unread(self.items, self.last_seen))
        self.notebook.tab(
            self.problems_screen.frame, text=f"Problems ({count})" if count else "Problems"
        )

    def mark_all_read(self) -> None:
        newest = newest_time(self.items)
        if newest is None:
            say(self.problems_screen.message, "no problems to mark")
            return
        path = self.env.last_seen_path

        def saved(done: Done[float]) -> None:
            if done.error is not None:
                say(self.problems_screen.message, f"could not save: {done.error}", ok=False)
                return
            assert done.value is not None
            self.last_seen = done.value
            self._show_problems()
            self.icon.show(icon_state(self.status, len(unread(self.items, self.last_seen))))
            say(self.problems_screen.message, "all marked read")

        self.worker.submit(lambda: last_seen.save(path, newest), saved)

    # -- actions -------------------------------------------------------------------------

    def _act(
        self,
        action: str,
        call: Callable[[KeeperClient], Any],
        shown: ttk.Label,
        ok: Callable[[Any], str],
        rejected: Callable[[dict[str, str]], None] | None = None,
        command: Sequence[str] = (),
    ) -> None:
        """Send an action that needs the token, or say why it cannot be sent (``command``:
        the arguments of the `nodekeeper` command that does the same, for the message)."""
        if self.client.token is None:
            self._needs_admin(action, shown, command)
            return
        say(shown, "sending...")

        def done(result: Done[Any]) -> None:
            error = result.error
            if error is None:
                say(shown, ok(result.value))
                self.poll_soon()
            elif isinstance(error, NotAuthorized) and self.client.token is None:
                self._needs_admin(action, shown, command)
            elif isinstance(error, Rejected) and rejected is not None:
                rejected(error.errors)
                say(shown, "the keeper refused it: see the fields", ok=False)
            elif isinstance(error, KeeperClientError):
                say(shown, str(error), ok=False)
            else:
                say(shown, f"failed: {error!r}", ok=False)

        self.worker.submit(lambda: call(self.client), done)

    def _needs_admin(self, action: str, shown: ttk.Label, command: Sequence[str] = ()) -> None:
        config = self.env.config_path
        text = admin.needs_admin_message(action, config, self.env.token_path, command)
        args = admin.command_for(action, config, command)
        if sys.platform == "win32" and args:
            failed = admin.run_elevated(args)
            text += f" ({failed})" if failed else " (started as administrator)"
        say(shown, text, ok=False)

    def poll_soon(self) -> None:
        if self._poll_id is not None:
            self.root.after_cancel(self._poll_id)
            self._poll_id = None
        self.root.after(200, self.poll)

    def restart_node(self) -> None:
        self._act(
            "restart",
            lambda c: c.restart(),
            self.status_screen.message,
            lambda _r: "restart asked: the node is being restarted",
        )

    def check_now(self) -> None:
        shown = self.updates_screen.check_result
        say(shown, "checking (this can take a minute)...")

        def done(result: Done[dict[str, Any]]) -> None:
            if result.error is not None:
                say(shown, str(result.error), ok=False)
                return
            text, ok = check_answer(result.value or {})
            say(shown, text, ok=ok)
            self.poll_soon()

        self.worker.submit(self.client.check_now, done)

    def pause_updates(self, until: float | None) -> None:
        def ok(_maintenance: Any) -> str:
            if until is None:
                return "updates resumed"
            return "updates paused until " + time.strftime("%Y-%m-%d %H:%M", time.localtime(until))

        command = (
            ["--resume"]
            if until is None
            else ["--until", time.strftime("%Y-%m-%dT%H:%M", time.localtime(until))]
        )
        self._act(
            "pause", lambda c: c.pause_updates(until), self.updates_screen.message, ok,
            command=command,
        )  # fmt: skip

    def set_quiet_window(self, window: str | None) -> None:
        screen = self.updates_screen
        self._act(
            "quiet-window",
            lambda c: c.set_quiet_window(window),
            screen.message,
            lambda _m: f"quiet window {window}" if window else "quiet window cleared",
            lambda errors: screen.window_error.configure(text=" ".join(errors.values())),
            command=[window] if window else ["--clear"],
        )

    def save_settings(self, screen: SettingsScreen, changes: dict[str, str]) -> None:
        current = {f: forms.shown_value(f, screen.current.get(f)) for f in forms.SETTINGS_FIELDS}
        values = {**current, **changes}
        fields = forms.fields_to_check(changes)
        self._checked_then(
            screen,
            lambda: forms.check(values, fields),
            "settings",
            lambda c: c.apply_settings(changes),
            lambda r: "saved" + (": the node was restarted" if r.get("restarted") else ""),
        )

    def set_up(self, screen: WizardScreen, values: dict[str, str]) -> None:
        body = {f: values.get(f, "").strip() for f in forms.WIZARD_FIELDS}
        self._checked_then(
            screen,
            lambda: forms.check(body, forms.WIZARD_FIELDS),
            "setup",
            lambda c: c.set_up(body),
            lambda _r: "the node is set up: the keeper starts it now",
        )

    def _checked_then(
        self,
        screen: SettingsScreen | WizardScreen,
        check: Callable[[], dict[str, str]],
        action: str,
        call: Callable[[KeeperClient], Any],
        ok: Callable[[Any], str],
    ) -> None:
        """Check the form on the worker; bad input shows its errors and sends nothing."""

        def checked(done: Done[dict[str, str]]) -> None:
            if done.error is not None:
                say(screen.message, f"could not check the fields: {done.error!r}", ok=False)
                return
            errors = done.value or {}
            screen.show_errors(errors)
            if errors:
                say(screen.message, "fix the fields marked above; nothing was sent", ok=False)
                return
            self._act(action, call, screen.message, ok, screen.show_errors)

        self.worker.submit(check, checked)

    def open_dashboard(self) -> None:
        url = (self.status or {}).get("dashboard_url")
        shown = self.status_screen.message
        if not url:
            say(shown, "the keeper does not report the node's dashboard address", ok=False)
            return
        opened = webbrowser.open(url)
        say(shown, f"opened {url}" if opened else f"no browser found: open {url}", ok=opened)

    def open_logs(self) -> None:
        shown = (
            self.problems_screen.message
            if self.notebook.select() == str(self.problems_screen.frame)
            else self.status_screen.message
        )
        why = open_folder(self.env.logs_dir)
        say(shown, why or f"opened {self.env.logs_dir}", ok=why is None)


def _sentence(text: str) -> str:
    text = text.strip()
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "?", "!")) else text + "."


def open_folder(path: Path) -> str | None:
    """Show ``path`` in the file manager; None when started, else why not."""
    if not path.is_dir():
        return f"the log folder {path} does not exist (yet)"
    try:
        if sys.platform == "win32":
            os.startfile(path)  # type: ignore[attr-defined]
        else:
            opener = "open" if sys.platform == "darwin" else "xdg-open"
            subprocess.Popen(
                [opener, str(path)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
    except OSError as exc:
        return f"cannot open a file manager ({exc.strerror or exc}): the logs are in {path}"
    return None


def _fallback_class() -> type:
    from nodekeeper.tray.fallback_icon import TkFallbackIcon

    return TkFallbackIcon


def _styles(root: tk.Tk) -> None:
    """One theme everywhere (clam draws the same on every X server), readable sizes."""
    style = ttk.Style(root)
    with contextlib.suppress(tk.TclError):
        if sys.platform != "win32":
            style.theme_use("clam")
    base = tkfont.nametofont("TkDefaultFont")
    base.configure(size=10)
    tkfont.nametofont("TkTextFont").configure(size=10)
    # Named, so widgets and Treeview tags can give it by name (Tk has no "TkBoldFont":
    # a name Tk does not know is taken as a family and drawn at 12-point normal weight).
    bold = tkfont.Font(root=root, name=BOLD_FONT, exists=False, **base.actual())
    bold.configure(weight="bold")
    root._bold_font = bold  # type: ignore[attr-defined]  # keep a reference
    big = base.copy()
    big.configure(size=11, weight="bold")
    root._big_font = big  # type: ignore[attr-defined]
    style.configure("Section.TLabel", font=big)
    style.configure("Attention.TLabel", font=big, foreground=COLOURS["attention"])
    style.configure("Key.TLabel", foreground="#444444")
    style.configure("Hint.TLabel", foreground="#666666")
    style.configure("Error.TLabel", foreground=COLOURS["attention"])
    style.configure("Message.TLabel", foreground="#1b5e20")
    style.configure("BannerError.TLabel", background="#c62828", foreground="white", font=bold)
    style.configure("BannerWarning.TLabel", background="#f9a825", foreground="black")
    style.configure("Banner.TLabel", background="#c62828", foreground="white")
    style.configure("Toast.TFrame", background="#263238")
    style.configure("Toast.TLabel", background="#263238", foreground="white")
    style.configure("ToastTitle.TLabel", background="#263238", foreground="white", font=bold)
    style.configure("Treeview", rowheight=22)
