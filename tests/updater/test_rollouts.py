"""Bad rollouts end to end (decision 062): a version that fails to start is rolled back,
remembered and never retried until a newer one; a version that migrated then fails is
held, with the keeper SIGKILLed at the hold and a second keeper finishing it. A keeper
process, the supervisor and the reference node with its database and pieces: what the
in-process tests (test_machine_outcomes.py, which also cover the migration failing
half-way, the crash during rollback and the failed first install) cannot show."""

from __future__ import annotations

import time

import pytest

from .lab import Lab

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


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
    [entry] = lab.entries("rolled_back")
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
    [entry] = lab.entries("held_after_migration")
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
