"""Updates that end committed, rolled back or held, in-process (tests/updater/inprocess.py):
the real update machine and check loop against the real control plane, with a scripted
node. Each states the exact journal steps, node starts and reports of its scenario; the
end-to-end proof of the same outcomes with a keeper process and the reference node is
tests/updater/test_rollouts.py and test_smoke.py."""

from __future__ import annotations

import pytest

from .inprocess import KeeperKilled, Rig, rig_fixture
from .scripted_node import crashes_after, crashes_at_start, healthy, migration_fails_half_way

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

# The journal's steps of an update up to its verdict ("-": nothing in flight).
UPDATE = ["download", "verify", "unpack", "preflight", "switch", "probation"]


rig = rig_fixture()


async def test_first_install_then_update(rig: Rig) -> None:
    await rig.install_first()
    rig.release("1.0.1")
    await rig.cycles(1)
    assert rig.node.started == ["1.0.0", "1.0.1"], rig.describe()
    journal = rig.journal()
    assert (journal["current"], journal["previous"]) == ("1.0.1", "1.0.0")
    assert journal["inflight"] is None
    # The recovered empty state, then two whole updates.
    assert rig.steps == ["-", *UPDATE, "commit", "-", *UPDATE, "commit", "-"]
    assert [(r["kind"], r["version"]) for r in rig.reports.sent if r["kind"] != "heartbeat"] == [
        ("update_succeeded", "1.0.0"),
        ("update_succeeded", "1.0.1"),
    ]
    assert rig.cycle.checks == 2 and rig.clock.waits == [0.0, 1.0, 1.0]
    assert rig.installed_versions() == ["1.0.0", "1.0.1"] and rig.error_index() == []


async def test_new_version_fails_to_start_rolls_back_and_is_not_retried(rig: Rig) -> None:
    await rig.install_first()
    rig.node.script("1.0.1", crashes_at_start())
    rig.release("1.0.1")
    await rig.cycles(1)
    journal = rig.journal()
    assert journal["current"] == "1.0.0" and journal["failed"] == ["1.0.1"], rig.describe()
    # Stopped for the switch, and started again after 1.0.1 died.
    assert rig.node.started == ["1.0.0", "1.0.1", "1.0.0"]
    assert rig.steps[-8:] == [*UPDATE, "rollback", "-"]
    [entry] = rig.entries("rolled_back")
    assert "1.0.1" in entry["message"] and "exited" in entry["message"]
    assert entry["level"] == "ERROR" and entry["target_version"] == "1.0.1"
    assert "rolled back storagenode from 1.0.1 to 1.0.0" in rig.log.text()
    [report] = rig.reports.of("rolled_back")
    assert (report["version"], report["target_version"]) == ("1.0.0", "1.0.1")
    # Three more cycles: no second attempt at 1.0.1.
    await rig.cycles(3)
    assert rig.updates_to("1.0.1") == 1 and rig.node.started == ["1.0.0", "1.0.1", "1.0.0"]
    status = rig.cycle.snapshot()
    assert status["failed"] == ["1.0.1"] and status["current"] == "1.0.0"
    assert rig.cycle.checks == 5
    # A newer version is tried.
    rig.release("1.0.2")
    await rig.cycles(1)
    journal = rig.journal()
    assert journal["current"] == "1.0.2" and journal["failed"] == []  # 1.0.1 is below it now


async def test_failure_after_a_migration_holds_on_the_new_version(rig: Rig) -> None:
    # The keeper also dies the instant the hold is journaled; the next one finishes it.
    await rig.install_first(crash_at="hold")
    schema = rig.node.database_schema
    assert schema == 1
    # Migrates (schema + 1), answers its probe, then hangs: the supervisor kills it.
    rig.node.script("1.0.1", crashes_after(0.0, schema=2, reason="hung"))
    rig.release("1.0.1")
    with pytest.raises(KeeperKilled):
        await rig.cycles(1)
    assert rig.journal()["inflight"]["step"] == "hold"
    assert rig.steps[-7:] == [*UPDATE, "hold"] and rig.reports.of("held_after_migration") == []
    await rig.restart()
    await rig.cycles(1)
    journal = rig.journal()
    assert journal["held"] and not journal["inflight"], rig.describe()
    assert (journal["current"], journal["previous"]) == ("1.0.1", "1.0.0")
    assert journal["held"]["version"] == "1.0.1"
    assert rig.steps == ["-"]  # the restarted keeper finished the hold, nothing more
    [entry] = rig.entries("held_after_migration")
    assert entry["message"].startswith("HELD on storagenode 1.0.1")
    assert "migration" in entry["message"]
    assert rig.cycle.snapshot()["held"]["version"] == "1.0.1"
    [report] = rig.reports.of("held_after_migration")
    assert (report["schema_before"], report["schema_after"]) == (schema, schema + 1)
    # It stays there, never back to 1.0.0...
    await rig.cycles(2)
    assert "rolled back" not in rig.log.text() and "1.0.0" not in rig.node.started[1:]
    # ...until the next release, which reads the migrated database.
    rig.node.script("1.0.2", healthy(schema=2))
    rig.release("1.0.2")
    await rig.cycles(1)
    journal = rig.journal()
    assert journal["current"] == "1.0.2" and journal["held"] is None
    assert rig.cycle.snapshot()["held"] is None


async def test_migration_failing_half_way_holds(rig: Rig) -> None:
    await rig.install_first()
    # The first extra migration commits, the second fails: exit 70, never a probe. Only
    # the old version refusing the database (exit 65) shows that a migration ran.
    rig.node.script("1.0.1", migration_fails_half_way(schema=2))
    rig.release("1.0.1")
    await rig.cycles(1)
    journal = rig.journal()
    assert journal["held"] and not journal["inflight"] and journal["current"] == "1.0.1"
    # Rolled back to 1.0.0, which refused the database; back to 1.0.1 to hold.
    assert rig.node.started == ["1.0.0", "1.0.1", "1.0.0", "1.0.1"], rig.describe()
    assert rig.steps[-9:] == [*UPDATE, "rollback", "hold", "-"]
    [entry] = rig.entries("held_after_migration")
    assert "refuses the database" in entry["message"] and "exit 65" in entry["message"]
    assert rig.cycle.snapshot()["held"]["version"] == "1.0.1"
    # A fixed release with both migrations working brings the node back.
    rig.node.script("1.0.2", healthy(schema=3))
    rig.release("1.0.2")
    await rig.cycles(1)
    assert rig.journal()["current"] == "1.0.2" and rig.node.running_version() == "1.0.2"


async def test_crash_during_rollback_finishes_it(rig: Rig) -> None:
    await rig.install_first(crash_at="rollback")
    rig.node.script("1.0.1", crashes_at_start())
    rig.release("1.0.1")
    with pytest.raises(KeeperKilled):
        await rig.cycles(1)
    assert rig.journal()["inflight"]["step"] == "rollback"
    await rig.restart()
    await rig.cycles(1)
    journal = rig.journal()
    assert journal["failed"] == ["1.0.1"] and journal["current"] == "1.0.0", rig.describe()
    assert rig.node.running_version() == "1.0.0"
    assert len(rig.entries("rolled_back")) == 1 and len(rig.reports.of("rolled_back")) == 1
    assert rig.updates_to("1.0.1") == 1


async def test_first_install_that_fails_stays_under_backoff_until_a_newer_one(rig: Rig) -> None:
    """Nothing to go back to: the failed first version is kept (the supervisor restarts
    it under backoff), remembered as failed, and replaced by the next release."""
    rig.node.script("1.0.0", crashes_at_start())
    rig.publish("1.0.0")
    rig.start()
    await rig.cycles(1)
    journal = rig.journal()
    assert journal["held"] and not journal["inflight"], rig.describe()
    assert journal["current"] == "1.0.0" and journal["failed"] == ["1.0.0"]
    [entry] = rig.entries("held_no_previous")
    assert "there is no earlier version to go back to" in entry["message"]
    assert rig.reports.kinds() == ["update_failed"]
    rig.release("1.0.1")
    await rig.cycles(1)
    assert rig.journal()["held"] is None and rig.node.running_version() == "1.0.1"


@pytest.mark.parametrize("percent", [0, 100])
async def test_fresh_node_with_bad_minimum_ends_on_the_suggested_version(
    rig: Rig, percent: float
) -> None:
    """A minimum that cannot work here (its preflight fails, for real) and a good
    suggested version: one try of the minimum, then the suggested, whatever the rollout."""
    rig.publish("1.2.0", "broken_version")
    rig.publish("1.3.0")
    rig.set_minimum("1.2.0")
    rig.roll_out("1.3.0", percent)
    rig.start()
    await rig.cycles(2)
    assert rig.journal()["current"] == "1.3.0", rig.describe()
    # 1.2.0 was tried once and never ran; committing 1.3.0 then forgot it.
    assert rig.updates_to("1.2.0") == 1 and rig.node.started == ["1.3.0"]
    assert rig.journal()["failed"] == []
    log = rig.log.text()
    assert "update of storagenode to 1.2.0 failed at preflight" in log
    assert "below the minimum 1.2.0, which failed on this node before" in log
    assert rig.cycle.checks == 2
    assert rig.loop_alive  # the same keeper's loop went on to 1.3.0: no restart needed
