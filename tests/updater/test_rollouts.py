"""Bad rollouts for real: a version that fails to start (roll back, remember, never
retry until a newer one), one that migrates then fails (hold), one whose migration fails
half-way (hold, found when the old version refuses the database), and a crash during the
rollback itself."""

from __future__ import annotations

import time

import pytest

from .lab import Lab

pytestmark = pytest.mark.timeout(180)


def entries(lab: Lab, reason: str) -> list[dict]:
    return [e for e in lab.error_index() if e.get("reason") == reason]


def test_new_version_fails_to_start_rolls_back_and_is_not_retried(lab: Lab) -> None:
    lab.publish("1.0.0")
    lab.start_keeper()
    lab.wait_running("1.0.0")
    lab.put_piece("p1", b"a" * 4000)
    old_pid = lab.node_pid()
    lab.release("1.0.1", "crash_at_start")
    lab.wait(lambda: "1.0.1" in (lab.journal() or {}).get("failed", []), 30, "1.0.1 failed")
    lab.wait_running("1.0.0")
    assert lab.node_pid() != old_pid  # it was stopped for the switch and started again
    [entry] = entries(lab, "rolled_back")
    assert "1.0.1" in entry["message"] and "exited" in entry["message"]
    assert entry["level"] == "ERROR" and entry["target_version"] == "1.0.1"
    assert "rolled back storagenode from 1.0.1 to 1.0.0" in lab.log_text()
    lab.wait(lambda: "rolled_back" in lab.report_kinds(), 15, "a rolled_back report")
    # Several cycles later: no second attempt at 1.0.1.
    pid = lab.node_pid()
    time.sleep(3.5)
    assert lab.log_text().count("→ 1.0.1") == 1
    assert lab.node_pid() == pid
    status = lab.status()
    assert status["update"]["failed"] == ["1.0.1"] and status["update"]["current"] == "1.0.0"
    lab.check_pieces()
    # A newer version is tried.
    lab.release("1.0.2")
    lab.wait_running("1.0.2")
    assert lab.journal()["failed"] == []  # 1.0.1 is below the committed version now
    lab.check_pieces()


def test_failure_after_a_migration_holds_on_the_new_version(lab: Lab) -> None:
    # The keeper is also killed the instant the hold is journaled; the next one finishes it.
    keeper = lab.start_keeper(env={"NODEKEEPER_TEST_CRASH_AT": "hold"})
    lab.publish("1.0.0")
    lab.wait_running("1.0.0")
    schema = lab.pulse()["schema_version"]
    lab.put_piece("p1", b"b" * 4000)
    # Migrates (schema + 1), answers its pulse, then hangs: the supervisor kills it.
    lab.release("1.0.1", "hang_after_start", extra_migration=1, hang_after=0.3, ignore_stop=False)
    assert keeper.proc.wait(60) == -9
    assert lab.journal()["inflight"]["step"] == "hold"
    lab.start_keeper()
    journal = lab.wait(
        lambda: (j := lab.journal()) and j["held"] and not j["inflight"] and j, 40, "a hold"
    )
    assert journal["current"] == "1.0.1" and journal["previous"] == "1.0.0"
    assert journal["held"]["version"] == "1.0.1"
    [entry] = entries(lab, "held_after_migration")
    assert entry["message"].startswith("HELD on storagenode 1.0.1")
    assert "migration" in entry["message"]
    status = lab.status()
    assert status["update"]["held"]["version"] == "1.0.1"
    lab.wait(lambda: "held_after_migration" in lab.report_kinds(), 15, "a held report")
    reports = [r for r in lab.reports() if r["kind"] == "held_after_migration"]
    assert reports[0]["details"]["schema_before"] == schema
    assert reports[0]["details"]["schema_after"] == schema + 1
    # It stays there (restarting under backoff), never back to 1.0.0...
    time.sleep(2)
    assert "rolled back" not in lab.log_text()
    # ...until the next release, which reads the migrated database.
    lab.release("1.0.2", extra_migration=1)
    lab.wait_running("1.0.2")
    assert lab.journal()["held"] is None
    assert lab.status()["update"]["held"] is None
    lab.check_pieces()


def test_migration_failing_half_way_holds(lab: Lab) -> None:
    lab.publish("1.0.0")
    lab.start_keeper()
    lab.wait_running("1.0.0")
    lab.put_piece("p1", b"c" * 4000)
    # First extra migration commits, the second fails: exit 70, never a pulse. Only the
    # old version refusing the database (exit 65) shows that a migration ran.
    lab.release("1.0.1", "fail_migration")
    lab.wait(lambda: (j := lab.journal()) and j["held"] and not j["inflight"], 40, "a hold")
    assert lab.journal()["current"] == "1.0.1"
    [entry] = entries(lab, "held_after_migration")
    assert "refuses the database" in entry["message"] and "exit 65" in entry["message"]
    # The keeper keeps restarting 1.0.1 (it fails its migration each time) and waits.
    status = lab.status()
    assert status["update"]["held"]["version"] == "1.0.1"
    # A fixed release with both migrations working brings the node back.
    lab.release("1.0.2", extra_migration=2)
    lab.wait_running("1.0.2", timeout=40)
    lab.check_pieces()


def test_crash_during_rollback_finishes_it(lab: Lab) -> None:
    lab.publish("1.0.0")
    keeper = lab.start_keeper()
    lab.wait_running("1.0.0")
    lab.put_piece("p1", b"d" * 4000)
    keeper.stop()
    lab.release("1.0.1", "crash_at_start")
    keeper = lab.start_keeper(env={"NODEKEEPER_TEST_CRASH_AT": "rollback"})
    assert keeper.proc.wait(60) == -9
    assert lab.journal()["inflight"]["step"] == "rollback"
    lab.start_keeper()
    lab.wait(lambda: "1.0.1" in (lab.journal() or {}).get("failed", []), 30, "1.0.1 failed")
    lab.wait_running("1.0.0")
    assert len(entries(lab, "rolled_back")) == 1
    lab.check_pieces()


def test_first_install_that_fails_stays_under_backoff_until_a_newer_one(lab: Lab) -> None:
    """Nothing to go back to: the failed first version is kept (restarted under backoff,
    as a node that crashes), remembered as failed, and replaced by the next release."""
    lab.publish("1.0.0", "crash_at_start")
    lab.start_keeper()
    journal = lab.wait(
        lambda: (j := lab.journal()) and j["held"] and not j["inflight"] and j, 30, "a hold"
    )
    assert journal["current"] == "1.0.0" and journal["failed"] == ["1.0.0"]
    [entry] = entries(lab, "held_no_previous")
    assert "there is no earlier version to go back to" in entry["message"]
    lab.wait(lambda: "update_failed" in lab.report_kinds(), 15, "an update_failed report")
    lab.release("1.0.1")
    lab.wait_running("1.0.1")
    assert lab.journal()["held"] is None
