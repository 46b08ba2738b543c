"""The window's screens: Status, Problems, Updates, Settings and the first-run wizard.

Widgets only: each screen shows what the app hands it (``show_*``) and turns clicks into
calls on the app (``TrayApp``), which does the I/O on its worker threads. What the
screens say comes from the pure modules (``status_screen``, ``unread``, ``forms``,
``pause``).
"""

from __future__ import annotations

import time
import tkinter as tk
from datetime import datetime
from pathlib import Path
from tkinter import filedialog, ttk
from typing import TYPE_CHECKING, Any

from nodekeeper.tray import forms, pause, status_screen
from nodekeeper.tray.unread import SEVERITIES, Problem, shown

if TYPE_CHECKING:
    from nodekeeper.tray.app import TrayApp

WRAP = 560  # pixels: values wrap inside an 800-pixel window beside their labels
FULL = 740  # pixels: a message across the whole window
PAD = 10
BOLD_FONT = "NodekeeperBold"  # the app's bold font, by name (made in app._styles)


class Screen:
    title = ""

    def __init__(self, parent: ttk.Notebook, app: TrayApp) -> None:
        self.app = app
        self.frame = ttk.Frame(parent, padding=PAD)


class Scrolled(ttk.Frame):
    """A frame whose content (``inner``) scrolls vertically when it is taller than the
    window: long statuses and a form full of errors are never cut off."""

    def __init__(self, parent: tk.Misc) -> None:
        super().__init__(parent)
        background = ttk.Style(self).lookup("TFrame", "background")
        self.canvas = tk.Canvas(
            self, highlightthickness=0, borderwidth=0, background=background or None
        )
        self.scroll = ttk.Scrollbar(self, orient="vertical", command=self.canvas.yview)
        self.canvas.configure(yscrollcommand=self._scrolled)
        self.canvas.pack(side="left", fill="both", expand=True)
        self.inner = ttk.Frame(self.canvas)
        window = self.canvas.create_window(0, 0, anchor="nw", window=self.inner)
        self.inner.bind(
            "<Configure>", lambda _e: self.canvas.configure(scrollregion=self.canvas.bbox("all"))
        )
        self.canvas.bind("<Configure>", lambda e: self.canvas.itemconfigure(window, width=e.width))
        # The wheel scrolls whatever scrolled frame the pointer is over.
        self.bind("<Enter>", lambda _e: self._wheel(True))
        self.bind("<Leave>", lambda _e: self._wheel(False))

    def _scrolled(self, first: str, last: str) -> None:
        """The scrollbar only while the content is taller than the frame (the labels wrap
        at a fixed width, so showing it never changes the content's height)."""
        self.scroll.set(first, last)
        needed = float(first) > 0.0 or float(last) < 1.0
        if needed and not self.scroll.winfo_manager():
            self.scroll.pack(side="right", fill="y", before=self.canvas)
        elif not needed and self.scroll.winfo_manager():
            self.scroll.pack_forget()

    def _wheel(self, on: bool) -> None:
        events = ("<MouseWheel>", "<Button-4>", "<Button-5>")
        for event in events:
            if on:
                self.bind_all(event, self._scroll)
            else:
                self.unbind_all(event)

    def _scroll(self, event: tk.Event) -> None:
        if event.num == 4 or event.delta > 0:
            self.canvas.yview_scroll(-2, "units")
        elif event.num == 5 or event.delta < 0:
            self.canvas.yview_scroll(2, "units")


def message_label(parent: tk.Misc, **grid: Any) -> ttk.Label:
    """A line for what an action answered (or why it could not be sent)."""
    label = ttk.Label(parent, text="", style="Message.TLabel", wraplength=FULL)
    label.grid(**grid)
    return label


def say(label: ttk.Label, text: str, ok: bool = True) -> None:
    label.configure(text=text, style="Message.TLabel" if ok else "Error.TLabel")


# -- Status ------------------------------------------------------------------------------


class StatusScreen(Screen):
    title = "Status"

    def __init__(self, parent: ttk.Notebook, app: TrayApp) -> None:
        super().__init__(parent, app)
        buttons = ttk.Frame(self.frame)
        buttons.pack(side="bottom", fill="x", pady=(PAD // 2, 0))
        self.restart = ttk.Button(buttons, text="Restart node", command=app.restart_node)
        self.restart.pack(side="left")
        ttk.Button(buttons, text="Open dashboard", command=app.open_dashboard).pack(
            side="left", padx=(PAD, 0)
        )
        ttk.Button(buttons, text="Open log folder", command=app.open_logs).pack(
            side="left", padx=(PAD, 0)
        )
        self.message = ttk.Label(self.frame, text="", style="Message.TLabel", wraplength=FULL)
        self.message.pack(side="bottom", fill="x", pady=(PAD // 2, 0))
        scrolled = Scrolled(self.frame)
        scrolled.pack(side="top", fill="both", expand=True)
        self.rows = scrolled.inner
        self.rows.columnconfigure(1, weight=1)
        self._shown: list[status_screen.Section] | None = None
        self.show(None)

    def show(self, status: dict[str, Any] | None, now: float | None = None) -> None:
        if status is None:
            sections: list[status_screen.Section] = [
                ("Node", [("state", "unknown: the keeper is not answering")])
            ]
        else:
            sections = status_screen.sections(status, now)
        if sections == self._shown:
            return  # rebuilding would flicker and lose the scroll position
        self._shown = sections
        for child in self.rows.winfo_children():
            child.destroy()
        row = 0
        for title, rows in sections:
            style = "Attention.TLabel" if title == "Needs attention" else "Section.TLabel"
            ttk.Label(self.rows, text=title, style=style).grid(
                row=row, column=0, columnspan=2, sticky="w", pady=(0 if row == 0 else 8, 2)
            )
            row += 1
            for label, text in rows:
                ttk.Label(self.rows, text=label, style="Key.TLabel").grid(
                    row=row, column=0, sticky="nw", padx=(0, PAD)
                )
                ttk.Label(self.rows, text=text or "-", wraplength=WRAP).grid(
                    row=row, column=1, sticky="nw"
                )
                row += 1


# -- Problems ----------------------------------------------------------------------------

ALL_SOURCES = "all sources"


class ProblemsScreen(Screen):
    title = "Problems"
    COLUMNS = (("time", 180), ("source", 80), ("severity", 90), ("message", 390))

    def __init__(self, parent: ttk.Notebook, app: TrayApp) -> None:
        super().__init__(parent, app)
        self.items: list[Problem] = []
        self.visible: list[Problem] = []
        self.last_seen = 0.0
        bar = ttk.Frame(self.frame)
        bar.pack(side="top", fill="x")
        ttk.Label(bar, text="Source").pack(side="left")
        self.source = ttk.Combobox(bar, values=[ALL_SOURCES], state="readonly", width=14)
        self.source.set(ALL_SOURCES)
        self.source.pack(side="left", padx=(4, PAD))
        ttk.Label(bar, text="At least").pack(side="left")
        self.severity = ttk.Combobox(bar, values=list(SEVERITIES), state="readonly", width=10)
        self.severity.set("WARNING")
        self.severity.pack(side="left", padx=(4, PAD))
        for box in (self.source, self.severity):
            box.bind("<<ComboboxSelected>>", lambda _e: self.refresh())
        ttk.Button(bar, text="Mark all read", command=app.mark_all_read).pack(side="right")
        self.count = ttk.Label(bar, text="")
        self.count.pack(side="right", padx=PAD)

        buttons = ttk.Frame(self.frame)
        buttons.pack(side="bottom", fill="x", pady=(PAD // 2, 0))
        ttk.Button(buttons, text="Copy for a forum post", command=self.copy).pack(side="left")
        ttk.Button(buttons, text="Open log folder", command=app.open_logs).pack(
            side="left", padx=(PAD, 0)
        )
        self.message = ttk.Label(buttons, text="", style="Message.TLabel", wraplength=450)
        self.message.pack(side="left", padx=(PAD, 0))

        panes = ttk.PanedWindow(self.frame, orient="vertical")
        panes.pack(side="top", fill="both", expand=True, pady=(PAD // 2, 0))
        table = ttk.Frame(panes)
        self.tree = ttk.Treeview(
            table, columns=[c for c, _ in self.COLUMNS], show="headings", selectmode="browse"
        )
        for name, width in self.COLUMNS:
            self.tree.heading(name, text=name.capitalize())
            self.tree.column(name, width=width, stretch=name == "message", anchor="w")
        self.tree.tag_configure("unread", font=BOLD_FONT)
        self.tree.tag_configure("ERROR", foreground="#b71c1c")
        self.tree.tag_configure("CRITICAL", foreground="#b71c1c")
        scroll = ttk.Scrollbar(table, orient="vertical", command=self.tree.yview)
        self.tree.configure(yscrollcommand=scroll.set)
        scroll.pack(side="right", fill="y")
        self.tree.pack(side="left", fill="both", expand=True)
        self.tree.bind("<<TreeviewSelect>>", lambda _e: self.show_details())
        self.details = tk.Text(panes, height=7, wrap="word", relief="flat", padx=6, pady=4)
        self.details.configure(state="disabled")
        panes.add(table, weight=3)
        panes.add(self.details, weight=1)

    def show(self, items: list[Problem], last_seen: float) -> None:
        self.items, self.last_seen = items, last_seen
        sources = sorted({p.source for p in items})
        self.source.configure(values=[ALL_SOURCES, *sources])
        self.refresh()

    def refresh(self) -> None:
        chosen = self.source.get()
        sources = None if chosen == ALL_SOURCES else {chosen}
        selected = self.selected()
        self.visible = shown(self.items, sources, self.severity.get())
        self.tree.delete(*self.tree.get_children())
        for index, problem in enumerate(self.visible):
            tags = [problem.level.upper()]
            if problem.timestamp > self.last_seen:
                tags.append("unread")
            mark = "● " if "unread" in tags else ""
            self.tree.insert(
                "",
                "end",
                iid=str(index),
                values=(mark + _local(problem.timestamp), problem.source,
                        problem.level, problem.message),
                tags=tags,
            )  # fmt: skip
            if selected is not None and problem == selected:
                self.tree.selection_set(str(index))
        unread = sum(1 for p in self.items if p.timestamp > self.last_seen)
        self.count.configure(text=f"{len(self.visible)} shown, {unread} unread")
        self.show_details()

    def selected(self) -> Problem | None:
        chosen = self.tree.selection()
        if not chosen:
            return None
        index = int(chosen[0])
        return self.visible[index] if index < len(self.visible) else None

    def show_details(self) -> None:
        problem = self.selected()
        text = problem.for_forum() if problem else "Select a problem to see its details."
        self.details.configure(state="normal")
        self.details.delete("1.0", "end")
        self.details.insert("1.0", text)
        self.details.configure(state="disabled")

    def copy(self) -> None:
        problem = self.selected()
        if problem is None:
            say(self.message, "select a problem first", ok=False)
            return
        self.frame.clipboard_clear()
        self.frame.clipboard_append(problem.for_forum())
        say(self.message, "copied: paste it into your forum post")


def _local(timestamp: float) -> str:
    # Local time to the minute: the index's ISO time (UTC, milliseconds) is in the details.
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp))


# -- Updates -----------------------------------------------------------------------------


class UpdatesScreen(Screen):
    title = "Updates"

    def __init__(self, parent: ttk.Notebook, app: TrayApp) -> None:
        super().__init__(parent, app)
        f = self.frame
        f.columnconfigure(1, weight=1)
        ttk.Label(f, text="Check", style="Section.TLabel").grid(row=0, column=0, sticky="w")
        ttk.Button(f, text="Check for updates now", command=app.check_now).grid(
            row=1, column=0, sticky="w", pady=4
        )
        self.check_result = message_label(f, row=1, column=1, sticky="w", padx=PAD)
        self.check_result.configure(wraplength=WRAP)

        ttk.Label(f, text="Pause", style="Section.TLabel").grid(
            row=2, column=0, sticky="w", pady=(PAD, 0)
        )
        pauses = ttk.Frame(f)
        pauses.grid(row=3, column=0, columnspan=2, sticky="w", pady=4)
        ttk.Button(pauses, text="1 hour", command=lambda: self.pause_for(1)).pack(side="left")
        ttk.Button(pauses, text="24 hours", command=lambda: self.pause_for(24)).pack(
            side="left", padx=(4, 0)
        )
        ttk.Label(pauses, text="until").pack(side="left", padx=(PAD, 4))
        self.until = ttk.Entry(pauses, width=18)
        self.until.pack(side="left")
        ttk.Button(pauses, text="Pause", command=self.pause_until).pack(side="left", padx=(4, 0))
        ttk.Button(pauses, text="Resume updates", command=lambda: app.pause_updates(None)).pack(
            side="left", padx=(PAD, 0)
        )
        self.until_error = ttk.Label(f, text="", style="Error.TLabel", wraplength=FULL)
        self.until_error.grid(row=4, column=0, columnspan=2, sticky="w")

        ttk.Label(f, text="Quiet window", style="Section.TLabel").grid(
            row=5, column=0, sticky="w", pady=(PAD, 0)
        )
        quiet = ttk.Frame(f)
        quiet.grid(row=6, column=0, columnspan=2, sticky="w", pady=4)
        ttk.Label(quiet, text="No updates between (HH:MM-HH:MM)").pack(side="left")
        self.window = ttk.Entry(quiet, width=14)
        self.window.pack(side="left", padx=4)
        ttk.Button(quiet, text="Save", command=self.save_window).pack(side="left")
        self.window_error = ttk.Label(quiet, text="", style="Error.TLabel", wraplength=330)
        self.window_error.pack(side="left", padx=PAD)
        ttk.Label(
            f,
            text="The keeper honours the window and a pause, except to reach the network's "
            "minimum version: a node below it gets no traffic.",
            wraplength=FULL,
        ).grid(row=7, column=0, columnspan=2, sticky="w")
        self.now_label = ttk.Label(f, text="", wraplength=FULL)
        self.now_label.grid(row=8, column=0, columnspan=2, sticky="w", pady=(PAD, 0))
        self.message = message_label(f, row=9, column=0, columnspan=2, sticky="w", pady=(PAD, 0))
        self._window_shown: str | None = None

    def show(self, status: dict[str, Any] | None, now: float) -> None:
        maintenance = (status or {}).get("maintenance")
        text = status_screen.maintenance_text(maintenance, now)
        self.now_label.configure(
            text=f"Now: {text}"
            if text
            else "Now: this keeper does not manage updates (its config has no [update] table)"
        )
        window = (maintenance or {}).get("quiet_window") or ""
        # Fill the field from the keeper, unless the operator is editing it.
        if window != self._window_shown and self.frame.focus_get() is not self.window:
            self.window.delete(0, "end")
            self.window.insert(0, window)
            self._window_shown = window

    def pause_for(self, hours: float) -> None:
        self.until_error.configure(text="")
        self.app.pause_updates(time.time() + hours * 3600)

    def pause_until(self) -> None:
        try:
            moment = pause.parse_until(self.until.get(), datetime.now())
        except ValueError as exc:
            self.until_error.configure(text=str(exc))
            return
        self.until_error.configure(text="")
        self.app.pause_updates(moment.timestamp())

    def save_window(self) -> None:
        try:
            window = pause.check_window(self.window.get())
        except ValueError as exc:
            self.window_error.configure(text=str(exc))
            return
        self.window_error.configure(text="")
        self.app.set_quiet_window(window)


# -- Settings and the wizard -------------------------------------------------------------


class FieldForm(Screen):
    """Labelled fields, each with its error beneath it, a button and a message line."""

    fields: tuple[str, ...] = ()
    folders = ("identity_dir", "storage_dir")
    button = ""
    intro = ""

    def __init__(self, parent: ttk.Notebook, app: TrayApp) -> None:
        super().__init__(parent, app)
        bottom = ttk.Frame(self.frame)
        bottom.pack(side="bottom", fill="x", pady=(PAD // 2, 0))
        self.submit = ttk.Button(bottom, text=self.button, command=self.send)
        self.submit.pack(side="top", anchor="w")
        self.message = ttk.Label(bottom, text="", style="Message.TLabel", wraplength=FULL)
        self.message.pack(side="top", fill="x", pady=(PAD // 2, 0))
        if self.intro:
            ttk.Label(self.frame, text=self.intro, wraplength=FULL).pack(
                side="top", fill="x", pady=(0, PAD)
            )
        scrolled = Scrolled(self.frame)
        scrolled.pack(side="top", fill="both", expand=True)
        f = scrolled.inner
        f.columnconfigure(1, weight=1)
        row = 0
        self.entries: dict[str, ttk.Entry] = {}
        self.errors: dict[str, ttk.Label] = {}
        self._texts: list[tk.StringVar] = []  # kept: Tk drops a variable Python forgets
        for field in self.fields:
            ttk.Label(f, text=forms.LABELS[field]).grid(
                row=row, column=0, sticky="w", padx=(0, PAD)
            )
            text = tk.StringVar(f)
            self._texts.append(text)
            text.trace_add("write", lambda *_a, fl=field: self._edited(fl))
            entry = ttk.Entry(f, textvariable=text)
            entry.grid(row=row, column=1, sticky="ew")
            # Show a value from its start once the operator leaves the field (typing
            # leaves a long wallet address scrolled to its end, its 0x out of sight).
            entry.bind("<FocusOut>", lambda _e, en=entry: en.xview_moveto(0), add="+")
            self.entries[field] = entry
            if field in self.folders:
                ttk.Button(f, text="Browse...", command=lambda fl=field: self.browse(fl)).grid(
                    row=row, column=2, sticky="w", padx=(4, PAD)
                )
            else:
                ttk.Label(f, text=forms.HINTS[field], style="Hint.TLabel").grid(
                    row=row, column=2, sticky="w", padx=(4, PAD)
                )
            error = ttk.Label(f, text="", style="Error.TLabel", wraplength=WRAP)
            error.grid(row=row + 1, column=1, columnspan=2, sticky="w", pady=(0, 4))
            self.errors[field] = error
            row += 2

    def _edited(self, field: str) -> None:
        """A field's error is about what it held: editing it takes the error away, and
        the refusal on the message line with it."""
        self.errors[field].configure(text="")
        if str(self.message.cget("style")) == "Error.TLabel":
            say(self.message, "")

    def browse(self, field: str) -> None:
        start = self.entries[field].get().strip() or str(Path.home())
        chosen = filedialog.askdirectory(parent=self.frame, initialdir=start, mustexist=False)
        if chosen:
            self.set_value(field, chosen)

    def values(self) -> dict[str, str]:
        return {field: entry.get() for field, entry in self.entries.items()}

    def set_value(self, field: str, text: str) -> None:
        self.entries[field].delete(0, "end")
        self.entries[field].insert(0, text)

    def show_errors(self, errors: dict[str, str]) -> None:
        """Each field's error next to it; one about no field goes to the message line."""
        for field, label in self.errors.items():
            label.configure(text=errors.get(field, ""))
        other = [f"{k}: {v}" if k else v for k, v in errors.items() if k not in self.errors]
        if other:
            say(self.message, "; ".join(other), ok=False)

    def send(self) -> None:
        raise NotImplementedError


class SettingsScreen(FieldForm):
    title = "Settings"
    fields = forms.SETTINGS_FIELDS
    button = "Save"
    intro = (
        "The node's settings. Save checks them here first, then the keeper applies them "
        "and restarts the node."
    )

    def __init__(self, parent: ttk.Notebook, app: TrayApp) -> None:
        super().__init__(parent, app)
        self.current: dict[str, Any] = {}

    def show(self, values: dict[str, Any]) -> None:
        """Fill the fields from the keeper, leaving alone what the operator has changed."""
        for field in self.fields:
            entry_text = self.entries[field].get()
            old = forms.shown_value(field, self.current.get(field))
            if entry_text == old:
                self.set_value(field, forms.shown_value(field, values.get(field)))
        self.current = dict(values)

    def send(self) -> None:
        changes = forms.changed(self.values(), self.current)
        if not changes:
            self.show_errors({})
            say(self.message, "nothing changed")
            return
        say(self.message, "checking...")
        self.app.save_settings(self, changes)


class WizardScreen(FieldForm):
    title = "Set up"
    fields = forms.WIZARD_FIELDS
    button = "Set up the node"
    intro = (
        "This node is not set up yet. Fill in each field; every one is checked before "
        "anything is sent, and its error shows under it."
    )

    def send(self) -> None:
        say(self.message, "checking...")
        self.app.set_up(self, self.values())
