"""The Status screen's rows (pure), from a real supervisor's snapshot plus an updater
part: the sections, the rollout sentence, disk use, the last check, maintenance, a hold."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nodekeeper.tray.status_screen import check_answer, maintenance_text, sections
from tests.keeper.test_status_view import NOW, update_part
from tests.keeper.test_status_view import node_snapshot as real_snapshot


def node_snapshot(tmp_path: Path) -> dict[str, Any]:
    """A real supervisor's snapshot without this machine's notes on limits (whether
    cgroup v2 delegates memory here is not what these tests are about)."""
    return {**real_snapshot(tmp_path), "limit_notes": []}


def test_sections_of_a_running_node_with_updates(tmp_path: Path) -> None:
    status = node_snapshot(tmp_path)
    status["update"] = update_part()
    status["last_pulse"] = {
        "ok": True, "at": NOW, "seconds": 0.002, "detail": "",
        "data": {"version": "1.2.0", "used_bytes": 250_000_000, "allocated_bytes": 1_000_000_000},
    }  # fmt: skip
    status["maintenance"] = {
        "quiet_window": "18:00-23:00",
        "paused_until": None,
        "verdict": {"allowed": True, "why": "outside the quiet window"},
    }
    found = dict(sections(status, NOW))
    assert list(found) == ["Node", "Updates", "Limits and usage"]
    node = dict(found["Node"])
    assert node["state"] == "stopped"
    assert node["disk"] == "238.4 MiB used of 953.7 MiB allocated (25%)"
    updates = dict(found["Updates"])
    assert updates["last check"].endswith("(00:01:00 ago): ok")
    assert updates["rollout"].startswith("rollout of 1.3.0 at 40.0 %, this node's position 73.7 %")
    assert "expected in about" in updates["rollout"]
    assert updates["next check"].startswith("in 00:14:00")
    assert updates["maintenance"] == (
        "no updates between 18:00 and 23:00; an update may start now: outside the quiet window"
    )
    assert {"memory", "cpu"} <= {label for label, _ in found["Limits and usage"]}


def test_a_hold_and_problems_come_first(tmp_path: Path) -> None:
    status = node_snapshot(tmp_path)
    status["update"] = update_part(held={"version": "1.3.0", "message": "rolled back twice"})
    status["hold"] = {"reason": "the storage folder is gone", "since": NOW - 120,
                      "fix": "reconnect the disk"}  # fmt: skip
    title, rows = sections(status, NOW)[0]
    assert title == "Needs attention"
    assert rows[0][0] == "ON HOLD"
    assert rows[0][1].startswith("the storage folder is gone (since ")
    assert rows[0][1].endswith("(00:02:00 ago)). reconnect the disk")
    assert ("problem", "UPDATE HELD on 1.3.0: rolled back twice") in rows


def test_no_updater_no_updates_section(tmp_path: Path) -> None:
    assert [t for t, _ in sections(node_snapshot(tmp_path), NOW)] == ["Node", "Limits and usage"]


def test_maintenance_text() -> None:
    assert maintenance_text(None, NOW) is None
    assert maintenance_text({"quiet_window": None, "paused_until": None}, NOW) == "no quiet window"
    paused = maintenance_text(
        {"quiet_window": None, "paused_until": NOW + 3600,
         "verdict": {"allowed": False, "why": "paused by the operator"}},
        NOW,
    )  # fmt: skip
    assert paused is not None
    assert paused.startswith("no quiet window; paused until ")
    assert paused.endswith("; no update now: paused by the operator")
    # A pause that has ended is not mentioned.
    assert maintenance_text({"paused_until": NOW - 1}, NOW) == "no quiet window"


def test_check_answers_say_the_decision_with_the_rollout_and_failures_as_errors() -> None:
    waiting = update_part()["decision"]
    text, ok = check_answer({"check": {"ok": True}, "decision": waiting})
    assert ok
    assert text == (
        "no update: the rollout of 1.3.0 has not reached this node yet; rollout of 1.3.0 at "
        "40.0 %, this node's position 73.7 %: expected in about 3 days at the current rate"
    )
    updating = {**waiting, "target": "1.3.0", "reason": "this node is in the rollout of 1.3.0",
                "rollout": {**waiting["rollout"], "position": 12.0}}  # fmt: skip
    text, ok = check_answer({"check": {"ok": True}, "decision": updating})
    assert ok and text == (
        "updating to 1.3.0: this node is in the rollout of 1.3.0; rollout of 1.3.0 at 40.0 %, "
        "this node's position 12.0 %: this node is included"
    )
    current = {**waiting, "code": "up-to-date", "reason": "1.3.0 is the newest"}
    assert check_answer({"check": {"ok": True}, "decision": current}) == (
        "no update: 1.3.0 is the newest",
        True,
    )
    assert check_answer({"check": {"ok": True}, "decision": None}) == (
        "checked; no decision was made",
        True,
    )

    failed = {"check": {"ok": False, "error": "connection refused"}, "decision": waiting}
    assert check_answer(failed) == (
        "the check failed: connection refused; the last decision stands: "
        "the rollout of 1.3.0 has not reached this node yet",
        False,
    )
    assert check_answer({"check": {"ok": False}}) == ("the check failed: no answer", False)
    busy = check_answer({"busy": True, "updating": "1.3.0"})
    assert busy == (
        "no check now: an update to 1.3.0 is being carried out (the Status screen shows its "
        "step; check again when it is done)",
        False,
    )
