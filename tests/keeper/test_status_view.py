"""`nodekeeper status` for people, rendered from status dicts in-process (pure): problems
first, the fields monitoring needs, why the node is (not) on the newest version, and
every line within 80 columns."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nodekeeper.keeper.config import KeeperConfig
from nodekeeper.keeper.status_view import render_status, rollout_sentence, status_problems
from nodekeeper.keeper.supervisor import Supervisor
from nodekeeper.platform import current_platform
from nodekeeper.version.decision import RolloutPosition
from tests.keeper.conftest import fast_settings

NOW = 1_796_000_000.0  # 2026-12-01


def node_snapshot(tmp_path: Path) -> dict[str, Any]:
    """A real supervisor's snapshot (not started), through JSON like the API serves it."""
    settings = fast_settings(tmp_path, ["true"], limits={"memory_hard": "1 GiB"})
    sup = Supervisor(KeeperConfig.model_validate(settings), current_platform())
    return json.loads(json.dumps(sup.snapshot()))


def update_part(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "process": "storagenode",
        "current": "1.2.0",
        "previous": "1.1.0",
        "running": "1.2.0",
        "failed": [],
        "held": None,
        "step": None,
        "target": None,
        "last_outcome": None,
        "last_failure": None,
        "last_error": None,
        "server": "https://version.example.net",
        "checks": 12,
        "failed_checks_in_row": 0,
        "unreachable_since": None,
        "last_check": {"ok": True, "at": NOW - 60},
        "checking": False,
        "next_check_in": 840.0,
        "next_check_at": NOW + 840,
        "decision": {
            "code": "waiting-for-rollout",
            "target": None,
            "skipped": None,
            "reason": "the rollout of 1.3.0 has not reached this node yet",
            "current": "1.2.0",
            "minimum": "1.2.0",
            "suggested": "1.3.0",
            "rollout": {
                "percent": 40.0,
                "position": 73.7,
                "rate_per_day": 10.0,
                "eta_seconds": RolloutPosition(40.0, 73.7, 10.0).eta_seconds(),
            },
            "at": NOW - 60,
        },
        "identity_error": None,
    }
    base.update(changes)
    return base


def test_monitoring_fields_are_in_the_snapshot(tmp_path: Path) -> None:
    data = node_snapshot(tmp_path)
    for key in ("healthy_since", "consecutive_failures", "restart_delay_seconds"):
        assert key in data
    assert data["consecutive_failures"] == 0 and data["restart_delay_seconds"] > 0
    assert data["tree_tracking"] is None  # nothing runs yet
    assert data["logs"]["cap_bytes"] == 1_000_000_000
    assert data["memory"]["hard_mechanism"]


def test_why_not_on_the_newest_version(tmp_path: Path) -> None:
    # limit_notes: this machine's own (e.g. no cgroup memory controller) are not the point.
    data = {**node_snapshot(tmp_path), "update": update_part(), "limit_notes": []}
    text = render_status(data, now=NOW)
    flat = " ".join(text.split())
    assert "the rollout of 1.3.0 has not reached this node yet" in flat
    # (73.7 - 40) % at 10 %/day = 3.37 days = 80.9 hours → "3 days".
    assert "rollout of 1.3.0 at 40.0 %, this node's position 73.7 %" in flat
    assert "expected in about 3 days at the current rate" in flat
    assert "next check      in 00:14:00" in text
    assert "PROBLEMS" not in text
    assert all(len(line) <= 80 for line in text.splitlines()), text


def test_rollout_sentences() -> None:
    decision = update_part()["decision"]
    fast = {**decision, "rollout": {**decision["rollout"], "rate_per_day": 240.0}}
    fast["rollout"]["eta_seconds"] = RolloutPosition(40.0, 73.7, 240.0).eta_seconds()
    assert rollout_sentence(fast).endswith("expected in about 3 hours at the current rate")
    paused = {**decision, "rollout": {**decision["rollout"], "rate_per_day": None}}
    paused["rollout"]["eta_seconds"] = None
    assert "does not announce a ramp rate" in rollout_sentence(paused)
    anonymous = {**decision, "rollout": {**decision["rollout"], "position": None}}
    assert "unknown until it has an identity" in rollout_sentence(anonymous)
    assert rollout_sentence({**decision, "code": "up-to-date"}) is None


def test_problems_come_first_and_fit_80_columns(tmp_path: Path) -> None:
    long_error = "cannot reach https://version.example.net/: " + "connection refused " * 6
    update = update_part(
        unreachable_since=NOW - 3600,
        failed_checks_in_row=7,
        last_check={"ok": False, "at": NOW - 5, "error": long_error, "failures": 7},
        last_failure={
            "outcome": "failed",
            "target": "1.3.0",
            "message": "update of storagenode to 1.3.0 failed at preflight: exit 1",
            "at": NOW - 7200,
        },
        identity_error="no identity in /var/lib/storj/identity yet: run `storagenode setup`",
    )
    reports = {"queued": 4, "failures_in_row": 3, "last_error": "connection refused"}
    data = {
        **node_snapshot(tmp_path),
        "update": update,
        "reports": reports,
        "crash_loop": True,
        "recent_failures": 5,
        "limit_notes": ["hard memory limit: no cgroup v2 memory controller; using RLIMIT_AS"],
        "logs": {"directory": "/x/logs", "bytes": 950_000_000, "cap_bytes": 1_000_000_000},
    }
    text = render_status(data, now=NOW)
    lines = text.splitlines()
    assert lines[0] == "PROBLEMS"
    flat = " ".join(text.split())
    assert "control plane https://version.example.net unreachable since" in flat
    assert "(01:00:00 ago) (7 failed checks)" in flat
    assert "last update failed" in flat and "failed at preflight" in flat
    assert "node identity: no identity in /var/lib/storj/identity yet" in flat
    assert "4 report(s) waiting to be sent: connection refused" in flat
    assert "crash loop" in flat and "limits: hard memory limit" in flat
    assert "log directory at 906.0 MiB of its 953.7 MiB cap" in flat
    assert all(len(line) <= 80 for line in lines), text
    # The problems block ends before the node's rows.
    assert lines.index("") < next(i for i, row in enumerate(lines) if row.startswith("state"))


def test_a_failure_fixed_by_a_later_commit_is_not_a_problem() -> None:
    failure = {"outcome": "failed", "target": "1.3.0", "message": "m", "at": NOW - 100}
    commit = {"outcome": "committed", "target": "1.3.1", "message": "ok", "at": NOW - 50}
    data = {"update": update_part(last_failure=failure, last_outcome=commit)}
    assert status_problems(data, NOW) == []
    data = {"update": update_part(last_failure=failure, last_outcome=failure)}
    [problem] = status_problems(data, NOW)
    assert problem.startswith("last update failed ") and problem.endswith("ago): m")


def test_a_held_node_and_the_watchs_problems_come_first() -> None:
    data = {
        "hold": {"reason": "/mnt/n has no marker", "since": NOW - 5, "fix": "Mount it"},
        "watch": {
            "problems": {
                "storage_missing": {"message": "/mnt/n has no marker", "fix": "Mount it"},
                "clock_off": {"message": "clock 2.0 hours behind", "fix": "Sync it"},
            }
        },
        "crash_loop": True,
    }
    problems = status_problems(data, NOW)
    assert problems[:2] == [
        "NODE STOPPED BY THE KEEPER: /mnt/n has no marker. Fix: Mount it",
        "clock 2.0 hours behind. Fix: Sync it",  # the hold already says the storage's
    ]
    assert problems[2].startswith("the node is in a crash loop")


def test_a_node_taken_over_or_restarted_at_keeper_start_is_said(tmp_path: Path) -> None:
    """Decision 063: a node the keeper took over from its predecessor shows as such; one
    it could not take over, and restarted, is a problem with the reason."""
    adopted = {**node_snapshot(tmp_path), "adoption": "adopted"}
    rows = [" ".join(line.split()) for line in render_status(adopted, now=NOW).splitlines()]
    assert "taken over from the previous keeper, without a restart" in rows
    assert not [p for p in status_problems(adopted, NOW) if "restarted" in p]
    why = "the node shim at 'x' did not answer within 10 s"
    restarted = {**node_snapshot(tmp_path), "adoption": f"restarted: {why}"}
    [problem] = [p for p in status_problems(restarted, NOW) if not p.startswith("limits:")]
    assert problem == (
        "the node was restarted when this keeper started: it could not take over the "
        f"running one ({why})"
    )
    assert node_snapshot(tmp_path)["adoption"] is None  # nothing to take over: no row
    assert "taken over" not in render_status(node_snapshot(tmp_path), now=NOW)
