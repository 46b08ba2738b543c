"""The real Tk window under Xvfb against a real keeper (`nodekeeper run` with the
reference node) and a real error index: every screen opened and grabbed as a PNG, the
problems list with its filters, details, copy and "mark all read", notifications through
the fallback icon, the banner when the keeper does not answer, the wizard driven by
events, and actions without the control token.

Screenshots go under each test's tmp_path (the paths are printed). ``make screenshots``
publishes those of test_window_updates.py and test_window_setup.py (``publish``): their
stacks are realistic (updates, a rollout, a node that needs setup) and short-named.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import tkinter as tk
from pathlib import Path

import pytest
from PIL import Image

from nodekeeper.tray import forms, last_seen
from nodekeeper.tray.app import HEIGHT, WIDTH, TrayApp
from nodekeeper.tray.notify_rules import NotifyPolicy
from nodekeeper.tray.run import build
from nodekeeper.tray.shots import capture_screens
from tests.support import free_port
from tests.tray.conftest import KeeperStack, pump_until, record_problems, sizes_masked

pytestmark = pytest.mark.timeout(180)
NODEKEEPER = [sys.executable, "-m", "nodekeeper"]


def window(root: tk.Tk, stack: KeeperStack, tmp_path: Path) -> TrayApp:
    return build(
        root, stack.config, stack.config_path, tmp_path / "last-seen.json",
        real_tray=False, poll_ms=250,
    )  # fmt: skip


def check_png(path: Path) -> None:
    """A real picture of the whole window: its size, and more than a few colours."""
    with Image.open(path) as image:
        assert image.size == (WIDTH, HEIGHT), f"{path}: {image.size}"
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
        assert colours is None or len(colours) > 20, f"{path} looks blank: {len(colours)} colours"


def publish(paths: list[Path]) -> None:
    target = os.environ.get("NODEKEEPER_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        for path in paths:
            shutil.copyfile(path, Path(target) / path.name)


def labels(widget: tk.Misc) -> list[str]:
    """The text of every label below ``widget``."""
    found = []
    for child in widget.winfo_children():
        if child.winfo_class() == "TLabel":
            found.append(str(child.cget("text")))
        found += labels(child)
    return found


@pytest.mark.e2e
def test_every_screen_against_a_real_keeper(
    tmp_path: Path, tk_root: tk.Tk, stack: KeeperStack
) -> None:
    record_problems(stack.logs_dir, stack.config, time.time())
    stack.start()
    app = window(tk_root, stack, tmp_path)
    pump_until(
        tk_root,
        lambda: (app.status or {}).get("state") == "running" and len(app.items) >= 3,
        30,
        "the keeper's status and the three problems",
    )
    # Status: the node's state and disk from the real keeper.
    shown = labels(app.status_screen.rows)
    assert "running" in shown
    assert any(text.endswith("allocated (0%)") for text in shown), shown

    # Problems: newest first, all unread, on the tab, the icon (the title) and notified.
    screen = app.problems_screen
    rows = [screen.tree.item(i) for i in screen.tree.get_children()]
    assert [r["values"][1] for r in rows] == ["keeper", "node", "updater"]
    assert all("unread" in r["tags"] for r in rows)
    # Unread rows in the app's bold font, at the size of the rest (a font name Tk does not
    # know would give 12-point normal weight, silently).
    unread_font = screen.tree.tag_configure("unread", "font")
    assert tk_root.tk.call("font", "actual", unread_font, "-weight") == "bold"
    assert tk_root.tk.call("font", "actual", unread_font, "-size") == 10
    assert app.notebook.tab(screen.frame, "text") == "Problems (3)"
    assert "3 unread problems" in tk_root.title()
    assert {n.kind for n in app.notices} == {"problem:keeper", "problem:node"}
    assert len(app.icon.toasts) == 2  # type: ignore[attr-defined]
    assert all(t.winfo_viewable() for t in app.icon.toasts)  # type: ignore[attr-defined]

    # Filters.
    screen.source.set("node")
    screen.refresh()
    assert [p.source for p in screen.visible] == ["node"]
    screen.source.set("all sources")
    screen.severity.set("CRITICAL")
    screen.refresh()
    assert [p.level for p in screen.visible] == ["CRITICAL"]
    screen.severity.set("WARNING")
    screen.refresh()

    # Details on selection, and a copy for a forum post through the clipboard.
    screen.tree.selection_set("1")
    tk_root.update()
    details = screen.details.get("1.0", "end-1c")
    assert details == screen.visible[1].for_forum()
    assert "What to do: see the node's log; restart it" in details
    screen.copy()
    assert tk_root.clipboard_get() == details

    # Screenshots of every screen this node has: it is set up, so no Set up screen (the
    # next poll would hide it again; test_window_setup.py shoots the wizard).
    paths = capture_screens(app, tmp_path / "screens")
    assert [p.name for p in paths] == ["status.png", "problems.png", "updates.png", "settings.png"]
    for path in paths:
        check_png(path)
        print(path)

    # Mark all read: saved to the file, nothing unread any more.
    app.mark_all_read()
    newest = max(p.timestamp for p in app.items)
    pump_until(tk_root, lambda: app.last_seen == newest, 10, "last seen saved")
    assert last_seen.load(tmp_path / "last-seen.json") == newest
    assert app.notebook.tab(screen.frame, "text") == "Problems"
    assert not any("unread" in screen.tree.item(i)["tags"] for i in screen.tree.get_children())
    pump_until(tk_root, lambda: "unread" not in tk_root.title(), 10, "the title without unread")


def test_a_keeper_that_does_not_answer_shows_a_banner_and_never_freezes_the_window(
    tmp_path: Path, tk_root: tk.Tk
) -> None:
    # A listening socket that never accepts: connections hang until the client's deadline.
    silent = socket.create_server(("127.0.0.1", 0), backlog=16)
    port = silent.getsockname()[1]
    config_path = tmp_path / "keeper.toml"
    config_path.write_text(
        f'data_dir = "{tmp_path / "data"}"\n[status]\nlisten = "127.0.0.1:{port}"\n'
    )
    from nodekeeper.keeper.config import load_config

    app = build(tk_root, load_config(config_path), config_path, tmp_path / "seen.json",
                real_tray=False, poll_ms=100)  # fmt: skip
    app.client.timeout = 1.0
    app.env.notify_policy = NotifyPolicy(keeper_after_seconds=1.5)
    slowest = 0.0

    def step() -> bool:
        nonlocal slowest
        began = time.monotonic()
        tk_root.update()
        slowest = max(slowest, time.monotonic() - began)
        return any(n.kind == "keeper-unreachable" for n in app.notices)

    try:
        pump_until(tk_root, step, 30, "the keeper-unreachable notification")
    finally:
        silent.close()
    assert app.banner.winfo_ismapped()
    banner = str(app.banner.cget("text"))
    assert banner.startswith(f"No keeper answering at http://127.0.0.1:{port}/status"), banner
    assert banner.endswith("The screens show the last known state; the window keeps trying.")
    assert "not answering" in tk_root.title()
    assert app.polls >= 2
    # Every turn of the event loop stayed short while requests waited out their deadline.
    assert slowest < 0.5, slowest
    assert [n.kind for n in app.notices] == ["keeper-unreachable"]


@pytest.mark.e2e
def test_actions_without_the_token_say_administrator_rights_are_needed(
    tmp_path: Path, tk_root: tk.Tk, stack: KeeperStack
) -> None:
    stack.start()
    app = window(tk_root, stack, tmp_path)
    app.client.token = None  # what an ordinary user's window has
    pump_until(tk_root, lambda: app.status is not None, 30, "the status")
    pid = app.status["pid"]  # type: ignore[index]
    app.status_screen.restart.invoke()
    text = str(app.status_screen.message.cget("text"))
    assert text.startswith("To restart the node this window needs administrator rights")
    assert text.endswith(f"run: sudo nodekeeper node restart --config {stack.config_path}")
    from nodekeeper.tray.shots import grab

    grab(tk_root).save(tmp_path / "needs-admin.png")
    check_png(tmp_path / "needs-admin.png")
    print(tmp_path / "needs-admin.png")
    app.updates_screen.pause_for(1)
    assert "To pause updates this window needs administrator rights" in str(
        app.updates_screen.message.cget("text")
    )
    polls = app.polls
    pump_until(tk_root, lambda: app.polls > polls, 10, "the next poll")
    assert app.status["pid"] == pid  # type: ignore[index]
    assert app.status["restarts"] == 0  # type: ignore[index]


def test_the_wizard_shows_each_error_next_to_its_field_and_sends_nothing_for_bad_input(
    tmp_path: Path, tk_root: tk.Tk
) -> None:
    config_path = tmp_path / "keeper.toml"
    config_path.write_text(
        f'data_dir = "{tmp_path / "data"}"\n[status]\nlisten = "127.0.0.1:{free_port()}"\n'
    )
    from nodekeeper.keeper.config import load_config

    app = build(tk_root, load_config(config_path), config_path, tmp_path / "seen.json",
                real_tray=False, poll_ms=60_000)  # fmt: skip
    app.client.token = None
    app.open_screen("Set up")
    wizard = app.wizard
    bad = {
        "identity_dir": str(tmp_path / "no-such-folder"),
        "wallet": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD",  # checksum broken
        "email": "op@@example.com",
        "external_address": "node.example.com",  # no port
        "storage_dir": str(tmp_path / "pieces"),
        "allocation": "1000 PB",
    }
    for field, text in bad.items():
        wizard.set_value(field, text)
    wizard.submit.invoke()
    message = wizard.message
    pump_until(tk_root, lambda: "nothing was sent" in str(message.cget("text")), 20, "errors")
    expected = forms.check(bad, forms.WIZARD_FIELDS)
    assert set(expected) == set(forms.WIZARD_FIELDS) - {"storage_dir"}
    for field in forms.WIZARD_FIELDS:
        shown = sizes_masked(str(wizard.errors[field].cget("text")))
        assert shown == sizes_masked(expected.get(field, "")), field
    paths = [tmp_path / "wizard-errors.png"]
    from nodekeeper.tray.shots import grab

    grab(tk_root).save(paths[0])
    check_png(paths[0])

    # Good input: no errors; then the send, which needs administrator rights here.
    identity = tmp_path / "identity"
    identity.mkdir()
    from storagenode.identity import new_identity_pem

    (identity / "identity.key").write_bytes(new_identity_pem()[0])
    good = {
        "identity_dir": str(identity),
        "wallet": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "email": "op@example.com",
        "external_address": "127.0.0.1:28967",
        "storage_dir": str(tmp_path / "pieces"),
        "allocation": "1 MB",
    }
    for field, text in good.items():
        wizard.set_value(field, text)
    wizard.submit.invoke()
    pump_until(
        tk_root,
        lambda: "administrator rights" in str(message.cget("text")),
        20,
        "the administrator-rights message",
    )
    assert all(str(label.cget("text")) == "" for label in wizard.errors.values())
    assert str(message.cget("text")).startswith(
        "To set the node up this window needs administrator rights"
    )


def test_a_second_start_shows_the_first_window_instead(tmp_path: Path, xdisplay: str) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    config_path = tmp_path / "keeper.toml"
    config_path.write_text(
        f'data_dir = "{tmp_path / "data"}"\n[status]\nlisten = "127.0.0.1:{free_port()}"\n'
    )
    env = {**os.environ, "DISPLAY": xdisplay, "XDG_RUNTIME_DIR": str(runtime),
           "XDG_STATE_HOME": str(tmp_path / "state")}  # fmt: skip
    argv = [*NODEKEEPER, "tray", "--config", str(config_path)]
    first = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        port_file = runtime / "nodekeeper" / "tray.port"
        deadline = time.monotonic() + 30
        while not port_file.exists():
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the first tray never listened"
            time.sleep(0.05)
        second = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
        assert second.returncode == 0, second.stderr
        assert "the nodekeeper tray app already runs (pid" in second.stdout
        assert second.stdout.rstrip().endswith("its window is shown")
        assert first.poll() is None
    finally:
        first.kill()
        first.wait(10)


def test_the_screenshot_option_writes_every_screen(tmp_path: Path, xdisplay: str) -> None:
    config_path = tmp_path / "keeper.toml"
    config_path.write_text(
        f'data_dir = "{tmp_path / "data"}"\n[status]\nlisten = "127.0.0.1:{free_port()}"\n'
    )
    env = {**os.environ, "DISPLAY": xdisplay, "XDG_STATE_HOME": str(tmp_path / "state")}
    out = tmp_path / "shots"
    done = subprocess.run(
        [*NODEKEEPER, "tray", "--config", str(config_path), "--screenshot", str(out)],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    written = sorted(p.name for p in out.iterdir())
    assert written == ["problems.png", "settings.png", "status.png", "updates.png"]
    order = ("status.png", "problems.png", "updates.png", "settings.png")
    assert done.stdout.split() == [str(out / name) for name in order]
    for name in written:
        check_png(out / name)


@pytest.mark.e2e
def test_actions_against_a_real_keeper(tmp_path: Path, tk_root: tk.Tk, stack: KeeperStack) -> None:
    stack.start()
    app = window(tk_root, stack, tmp_path)
    assert app.client.token is not None  # root reads the keeper's control token
    pump_until(tk_root, lambda: app.status and app.settings, 30, "status and settings")
    pid = app.status["pid"]  # type: ignore[index]

    # Restart: asked, and a new node process.
    app.status_screen.restart.invoke()
    message = app.status_screen.message
    pump_until(tk_root, lambda: "restart asked" in str(message.cget("text")), 60, "restarted")
    pump_until(
        tk_root,
        lambda: (
            (app.status or {}).get("pid") not in (None, pid) and app.status["state"] == "running"
        ),  # type: ignore[index]
        60,
        "a new node pid",
    )

    # Pause: this keeper manages no updates ([update] needs a control plane), and says so.
    updates = app.updates_screen
    updates.pause_for(1)
    pump_until(
        tk_root, lambda: "no [update] table" in str(updates.message.cget("text")), 30,
        "the keeper's refusal",
    )  # fmt: skip
    assert str(updates.message.cget("style")) == "Error.TLabel"

    # Settings: one field changed, saved by the keeper, shown from the next poll.
    settings = app.settings_screen
    settings.set_value("email", "operator@example.com")
    settings.submit.invoke()
    pump_until(tk_root, lambda: str(settings.message.cget("text")).startswith("saved"), 90, "saved")
    pump_until(
        tk_root,
        lambda: (app.settings or {}).get("values", {}).get("email") == "operator@example.com",
        30,
        "the new e-mail from the keeper",
    )
    grab_path = tmp_path / "after-actions.png"
    from nodekeeper.tray.shots import grab

    app.open_screen("Updates")
    grab(tk_root).save(grab_path)
    check_png(grab_path)
    print(grab_path)
