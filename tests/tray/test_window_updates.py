"""The window against a keeper that manages updates: a real control plane with real
releases and a rollout in progress (tests/updater/lab.py's ``Lab``), a keeper process
with ``[update]`` and the reference node. The Status screen shows the installed version,
the last and next check and where this node stands in the rollout, with its ETA; the
Updates screen's buttons and fields check now, pause, set the quiet window and resume,
with the control token the window read from the keeper's state directory.

``test_the_screens_of_a_node_in_a_rollout`` is also what ``make screenshots`` publishes.
"""

from __future__ import annotations

import json
import re
import time
import tkinter as tk
from pathlib import Path

import pytest

from nodekeeper.keeper.client import read_token
from nodekeeper.keeper.config import load_config
from nodekeeper.keeper.control_token import TOKEN_FILE
from nodekeeper.tray import last_seen
from nodekeeper.tray.app import TrayApp
from nodekeeper.tray.run import build
from nodekeeper.tray.shots import capture_screens
from nodekeeper.updater.identity import read_node_id
from nodekeeper.version.decision import node_position
from tests.tray.conftest import (
    click,
    find_button,
    pump_until,
    record_problems,
    rows_shown,
    type_into,
)
from tests.tray.test_window import check_png, publish
from tests.updater.lab import PROCESS, Lab

pytestmark = [pytest.mark.timeout(120), pytest.mark.e2e]
ROLLOUT = f"/v1/admin/processes/{PROCESS}/rollout"


def seed_past(node_id: bytes, percent: float) -> tuple[str, float]:
    """A rollout seed that puts this node past ``percent`` (a deterministic search), and
    the node's position with it."""
    for n in range(1000):
        seed = bytes([n % 256, n // 256]) * 16
        position = node_position(node_id, seed)
        if percent + 10 < position < 95:
            return seed.hex(), position
    raise AssertionError(f"no seed puts this node past {percent} %")


def start_rollout(lab: Lab, version: str, percent: float, rate_per_day: float) -> float:
    """A ramping rollout of ``version`` at ``percent`` that has not reached this node;
    this node's position in it."""
    seed, position = seed_past(read_node_id(lab.node.config_dir), percent)
    lab.admin.request(
        "POST", ROLLOUT, json={"version": version, "rate_per_day": rate_per_day, "seed": seed}
    )
    lab.admin.request("PUT", f"{ROLLOUT}/percent", json={"percent": percent})
    return position


def keeper_with_updates(
    lab: Lab, reachability: dict[str, object] | None = None, **update: object
) -> None:
    """1.0.0 installed and running; checks an hour apart, so that only the window's
    "check now" sees the rollout started next. ``reachability``: the keeper's table."""
    lab.publish("1.0.0")
    extra = {"reachability": reachability} if reachability else {}
    lab.start_keeper(update={"interval_seconds": 3600.0, "jitter": 0.0, **update}, **extra)
    lab.wait_running("1.0.0", timeout=60)
    lab.wait(lambda: (lab.status() or {}).get("update", {}).get("next_check_in"), 30, "a check")


def window(tk_root: tk.Tk, lab: Lab, last_seen_path: Path) -> TrayApp:
    config_path = lab.root / "keeper.toml"
    return build(
        tk_root, load_config(config_path), config_path, last_seen_path,
        real_tray=False, poll_ms=250,
    )  # fmt: skip


def rollout_pattern(version: str, percent: float, position: float) -> re.Pattern[str]:
    return re.compile(
        rf"rollout of {re.escape(version)} at {percent:.1f} %, this node's position "
        rf"{position:.1f} %: expected in about \d+ (hours|days) at the current rate"
    )


def maintenance(lab: Lab) -> dict[str, object]:
    """The keeper's own /status maintenance dict (not the window's copy)."""
    status = lab.status()
    assert status is not None, "the keeper stopped answering"
    return status["maintenance"]


def test_updates_through_the_window_with_the_token_from_the_keepers_state_dir(
    tmp_path: Path, tk_root: tk.Tk, lab: Lab
) -> None:
    keeper_with_updates(lab)
    app = window(tk_root, lab, tmp_path / "last-seen.json")
    token_path = lab.data_dir / "state" / TOKEN_FILE
    assert app.env.token_path == token_path
    assert app.client.token is not None and app.client.token == read_token(token_path)

    # Status: the installed version, the last check and the next one, from the keeper.
    status_rows = app.status_screen.rows
    pump_until(tk_root, lambda: "installed" in rows_shown(status_rows), 30, "the update rows")
    shown = rows_shown(status_rows)
    assert shown["version"] == "1.0.0" and shown["installed"] == "1.0.0"
    assert shown["last check"].endswith(": ok"), shown
    assert re.fullmatch(r"in \S+ \(at \d\d:\d\d(:\d\d)?\)", shown["next check"]), shown
    assert "rollout" not in shown

    # A rollout starts that has not reached this node; "check now" sees it at once.
    lab.publish("1.1.0")
    position = start_rollout(lab, "1.1.0", percent=40, rate_per_day=20)
    app.open_screen("Updates")
    updates = app.updates_screen
    click(find_button(updates.frame, "Check for updates now"))
    answer = pump_until(
        tk_root,
        lambda: (
            "rollout of 1.1.0" in str(updates.check_result.cget("text"))
            and str(updates.check_result.cget("text"))
        ),
        60,
        "the check's answer",
    )
    sentence = rollout_pattern("1.1.0", 40, position)
    assert answer.startswith("no update: the rollout of 1.1.0 has not reached this node yet; ")
    assert sentence.fullmatch(answer.split("; ", 1)[1]), answer
    pump_until(
        tk_root,
        lambda: sentence.fullmatch(rows_shown(status_rows).get("rollout", "")),
        10,
        f"the rollout sentence on the Status screen (shown: {rows_shown(status_rows)})",
    )

    # Pause 1 hour: the keeper holds updates until then, and the window says so.
    asked = time.time()
    click(find_button(updates.frame, "1 hour"))
    pump_until(
        tk_root,
        lambda: str(updates.message.cget("text")).startswith("updates paused until "),
        30,
        "the pause answered",
    )
    paused_until = maintenance(lab)["paused_until"]
    assert isinstance(paused_until, float)
    assert asked + 3600 <= paused_until <= time.time() + 3600
    pump_until(
        tk_root,
        lambda: "paused until" in str(updates.now_label.cget("text")),
        10,
        "the pause on the Updates screen",
    )

    # A bad quiet window: its error next to the field, nothing sent, nothing changed.
    type_into(updates.window, "25:00-26:00")
    click(find_button(updates.frame, "Save"))
    error = str(updates.window_error.cget("text"))
    assert error == "quiet window '25:00-26:00': hours are 00-23, minutes 00-59"
    assert maintenance(lab)["quiet_window"] is None
    # The keeper's own refusal (what it says to any client) lands next to the field too.
    updates.window_error.configure(text="")
    app.set_quiet_window("25:00-26:00")
    pump_until(tk_root, lambda: updates.window_error.cget("text"), 30, "the keeper's refusal")
    assert "hours are 00-23" in str(updates.window_error.cget("text"))
    assert maintenance(lab)["quiet_window"] is None

    # A good one: saved by the keeper, in its /status and its state file.
    type_into(updates.window, "18:00-23:00")
    click(find_button(updates.frame, "Save"))
    pump_until(
        tk_root,
        lambda: str(updates.message.cget("text")) == "quiet window 18:00-23:00",
        30,
        "the quiet window saved",
    )
    assert str(updates.window_error.cget("text")) == ""
    assert maintenance(lab)["quiet_window"] == "18:00-23:00"
    saved = json.loads((lab.data_dir / "state" / "maintenance.json").read_text())
    assert saved["quiet_window"] == "18:00-23:00"
    pump_until(
        tk_root,
        lambda: "no updates between 18:00 and 23:00" in rows_shown(status_rows)["maintenance"],
        10,
        "the quiet window on the Status screen",
    )

    # Resume: the pause is gone, the window stays.
    click(find_button(updates.frame, "Resume updates"))
    pump_until(
        tk_root, lambda: str(updates.message.cget("text")) == "updates resumed", 30, "resumed"
    )
    after = maintenance(lab)
    assert after["paused_until"] is None and after["quiet_window"] == "18:00-23:00"
    pump_until(
        tk_root,
        lambda: "paused until" not in rows_shown(status_rows)["maintenance"],
        10,
        "the pause gone from the Status screen",
    )


DIALLED_BACK = re.compile(r"TCP reachable, UDP reachable \(checked \d\d:\d\d\)")


def test_the_screens_of_a_node_in_a_rollout(tmp_path: Path, tk_root: tk.Tk, lab: Lab) -> None:
    """The stack ``make screenshots`` shows: updates managed, a rollout of 1.1.0 ramping
    towards this node, the operator's quiet window, and a few problems in the index (the
    oldest already read)."""
    # The control plane dials the node back (decision 082): "From outside" on Status.
    reach = {"address": f"127.0.0.1:{lab.node.port}"}
    keeper_with_updates(lab, reachability=reach, quiet_window="18:00-23:00")
    lab.publish("1.1.0")
    position = start_rollout(lab, "1.1.0", percent=40, rate_per_day=20)
    config = load_config(lab.root / "keeper.toml")
    now = time.time()
    record_problems(config.logs_path(), config, now)
    seen = tmp_path / "last-seen.json"
    last_seen.save(seen, now - 1800)  # the oldest problem was read
    app = window(tk_root, lab, seen)
    app.check_now()  # what the keeper's next check would see, now
    sentence = rollout_pattern("1.1.0", 40, position)
    pump_until(
        tk_root,
        lambda: (
            sentence.fullmatch(rows_shown(app.status_screen.rows).get("rollout", ""))
            and len(app.items) >= 3
            and app.settings is not None
            # "not checked yet" also says "checked": wait for the dial-back's answer.
            and DIALLED_BACK.fullmatch(rows_shown(app.status_screen.rows).get("from outside", ""))
        ),
        60,
        "the rollout, the problems, the settings and the dial-back",
    )
    shown = rows_shown(app.status_screen.rows)
    assert shown["installed"] == "1.0.0"
    assert DIALLED_BACK.fullmatch(shown["from outside"]), shown
    assert shown["maintenance"].startswith("no updates between 18:00 and 23:00")
    assert app.notebook.tab(app.problems_screen.frame, "text") == "Problems (2)"
    assert app.settings["values"]["wallet"] == "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
    # Every path the window shows is under the short-named stack, none under pytest's.
    assert str(lab.root).startswith("/tmp/nodekeeper-")
    assert not any("pytest-of" in text for text in shown.values()), shown
    assert app.notebook.tab(app.wizard.frame, "state") == "hidden"

    paths = capture_screens(app, tmp_path / "screens")
    assert [p.name for p in paths] == ["status.png", "problems.png", "updates.png", "settings.png"]
    for path in paths:
        check_png(path)
        print(path)
    publish(paths)
