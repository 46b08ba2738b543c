"""The operator's quiet window and pause, wired into the node's update cycle (decision
069): in-process with the real control plane and a stepped clock (tests/updater/
inprocess.py), and end to end with a keeper process, the reference node and the tray's
client (tests/updater/lab.py)."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from nodekeeper.keeper.client import KeeperClient, Rejected
from nodekeeper.keeper.config import load_config
from nodekeeper.keeper.maintenance_store import MaintenanceStore
from nodekeeper.updater.maintenance import HELD, QuietWindow

from .inprocess import Rig, rig_fixture
from .lab import Lab

rig = rig_fixture()

# A fixed moment: 20:30 local time on a known day.
EVENING = datetime(2026, 12, 3, 20, 30).timestamp()


def window_around(moment: datetime) -> str:
    return f"{moment - timedelta(hours=1):%H:%M}-{moment + timedelta(hours=1):%H:%M}"


@pytest.mark.anyio
@pytest.mark.timeout(120)
async def test_the_window_holds_a_rollout_update_not_the_first_install_nor_the_minimum(
    rig: Rig, tmp_path: Path
) -> None:
    store = MaintenanceStore(tmp_path / "state", QuietWindow.parse("20:00-22:00"), lambda: EVENING)
    rig.publish("1.0.0")
    rig.start()
    rig.cycle.may_update = store.verdict
    await rig.cycles(1)
    assert rig.node.running_version() == "1.0.0", rig.describe()  # nothing installed: not held

    rig.release("1.0.1")
    await rig.cycles(2)
    decision = rig.cycle.snapshot()["decision"]
    assert decision["code"] == HELD and decision["target"] is None
    assert decision["reason"].startswith("1.0.1 is due (")
    assert decision["reason"].endswith("held by the quiet window 20:00-22:00 until 22:00")
    assert rig.journal()["current"] == "1.0.0" and rig.node.started == ["1.0.0"]
    assert rig.cycle.checks == 3  # checks went on

    rig.release("1.0.2")
    rig.set_minimum("1.0.2")  # below the minimum nothing holds an update
    await rig.cycles(1)
    assert rig.journal()["current"] == "1.0.2", rig.describe()
    assert rig.cycle.snapshot()["decision"]["code"] == "below-minimum"


@pytest.mark.anyio
@pytest.mark.timeout(120)
async def test_a_pause_holds_until_resumed(rig: Rig, tmp_path: Path) -> None:
    store = MaintenanceStore(tmp_path / "state", None, lambda: EVENING)
    await rig.install_first("1.0.0")
    rig.cycle.may_update = store.verdict
    store.pause(EVENING + 3600)
    rig.release("1.0.1")
    await rig.cycles(1)
    assert "held: updates are paused until 2026-12-03 21:30" in rig.cycle.decision["reason"]
    assert rig.journal()["current"] == "1.0.0"
    store.pause(None)
    await rig.cycles(1)
    assert rig.journal()["current"] == "1.0.1", rig.describe()


@pytest.mark.anyio
@pytest.mark.timeout(120)
async def test_a_broken_hold_does_not_stop_updates(rig: Rig) -> None:
    def broken(_below: bool) -> object:
        raise RuntimeError("a bug")

    await rig.install_first("1.0.0")
    rig.cycle.may_update = broken  # type: ignore[assignment]
    rig.release("1.0.1")
    await rig.cycles(1)
    assert rig.journal()["current"] == "1.0.1"
    assert "not holding the update" in rig.log.text(40)


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_a_keeper_holds_the_update_in_its_window_keeps_the_hold_across_restarts(
    lab: Lab,
) -> None:
    window = window_around(datetime.now())
    lab.publish("1.0.0")
    keeper = lab.start_keeper(update={"quiet_window": window})  # keeper.toml's default
    lab.wait_running("1.0.0", timeout=60)  # the first install is never held
    config = load_config(lab.root / "keeper.toml")
    client = KeeperClient.from_config(config)
    assert client.token is not None  # the test runs as root
    status = client.status()
    maintenance = status["maintenance"]
    end = window.split("-")[1]
    assert maintenance == {
        "quiet_window": window,
        "paused_until": None,
        "verdict": {
            "allowed": False,
            "why": f"held by the quiet window {window} until {end}",
        },
    }

    lab.release("1.1.0")
    held = lab.wait(
        lambda: (
            (lab.status() or {}).get("update", {}).get("decision", {}).get("code") == HELD
            and lab.status()
        ),
        60,
        "the update held",
    )
    checks = held["update"]["checks"]
    assert f"held by the quiet window {window} until {end}" in held["update"]["decision"]["reason"]
    lab.wait(lambda: lab.status()["update"]["checks"] >= checks + 2, 30, "two more checks")
    assert lab.journal()["current"] == "1.0.0" and lab.status()["version"] == "1.0.0"

    # The operator clears the window but pauses for an hour; a bad window changes nothing.
    with pytest.raises(Rejected) as bad:
        client.set_quiet_window("25:00-26:00")
    assert "hours are 00-23" in bad.value.errors["window"]
    until = time.time() + 3600
    paused = client.pause_updates(until)
    assert paused["paused_until"] == pytest.approx(until)
    cleared = client.set_quiet_window(None)
    assert cleared["quiet_window"] is None and not cleared["verdict"]["allowed"]
    saved = json.loads((lab.data_dir / "state" / "maintenance.json").read_text())
    assert saved["quiet_window"] is None and saved["paused_until"] == pytest.approx(until)

    # A restarted keeper keeps both: the cleared window wins over keeper.toml's default.
    assert keeper.stop() == 0
    lab.start_keeper()
    lab.wait_running("1.0.0", timeout=60)
    again = KeeperClient.from_config(config).status()["maintenance"]
    assert again["quiet_window"] is None and again["paused_until"] == pytest.approx(until)
    assert again["verdict"]["why"].startswith("held: updates are paused until")

    KeeperClient.from_config(config).pause_updates(None)
    lab.wait_running("1.1.0", timeout=90)


def test_a_damaged_file_is_logged_and_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "maintenance.json").write_bytes(b"\xff{ not json")
    default = QuietWindow.parse("01:00-02:00")
    store = MaintenanceStore(state, default, lambda: EVENING)
    assert store.current.window == default and store.current.paused_until is None
    assert "ignoring" in caplog.text and "maintenance.json" in caplog.text
    damaged = [
        '{"format": 2}',
        '{"format": 1, "quiet_window": 5}',
        "[]",
        '{"format": 1, "paused_until": "soon"}',
        '{"format": 1, "quiet_window": "x"}',
    ]
    for bad in damaged:
        (state / "maintenance.json").write_text(bad)
        assert MaintenanceStore(state, default, lambda: EVENING).current.window == default
    store.set_window("03:00-04:00")
    assert MaintenanceStore(state, default).current.window == QuietWindow.parse("03:00-04:00")
