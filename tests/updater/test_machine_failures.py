"""The seed document's failure cases around an update, in-process (tests/updater/
inprocess.py): the download fails or is corrupted, the new version fails preflight, the
old version cannot be deleted, the disk fills during the new version's migration, the
node is not set up, the journal cannot be written. Each: a clear log line, an
error-index entry, the node kept on its last good version where that is safe, and a
retry on the next cycle, counted in cycles instead of waited for."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.updater.httpserver import FileServer

from .inprocess import PROCESS, Immutable, Rig, rig_fixture
from .scripted_node import healthy, out_of_space

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

FIRST_INSTALL = ["-", "download", "verify", "unpack", "preflight", "switch", "probation"]
FIRST_INSTALL += ["commit", "-"]


rig = rig_fixture()


@pytest.fixture
def immutable(tmp_path: Path) -> Iterator[Immutable]:
    flags = Immutable(tmp_path)
    yield flags
    flags.release()


async def test_download_failures_retry_next_cycle_with_the_node_untouched(rig: Rig) -> None:
    data = rig.shelf.get("1.0.1").read_bytes()
    with FileServer() as files:
        url = files.add("/storagenode_1.0.1.zip", data)
        await rig.install_first()
        rig.publish_url("1.0.1", url)  # the admin client fetches it once: sha256 and size
        files.fault(status=500)  # cycle 1: server error
        files.fault(close_after=len(data) // 2)  # cycle 2: cut mid-body (.part kept)
        files.fault(extra=b"tampered")  # cycle 3: more bytes than announced
        rig.roll_out("1.0.1")
        await rig.cycles(4)
    assert rig.journal()["current"] == "1.0.1", rig.describe()
    assert rig.reasons() == ["download_failed", "download_failed", "verification_failed"]
    assert "answered HTTP 500" in rig.entries("download_failed")[0]["message"]
    assert "the node stays on 1.0.0; the keeper tries again next cycle" in rig.log.text()
    assert rig.reports.kinds() == [
        "update_succeeded",
        "download_failed",
        "download_failed",
        "verification_failed",
        "update_succeeded",
    ]
    # The node ran untouched through the three failed attempts: one switch, at the end.
    assert rig.node.switches == ["1.0.0", "1.0.1"] and rig.node.started == ["1.0.0", "1.0.1"]
    assert (
        rig.steps
        == [
            *FIRST_INSTALL,
            *["download", "-"] * 3,  # too many bytes is found while downloading
            *FIRST_INSTALL[1:],
        ]
    )
    assert rig.journal()["failed"] == []


async def test_no_switch_while_the_keeper_holds_the_node_and_the_update_after_release(
    rig: Rig,
) -> None:
    # Decision 070: the storage is gone, the keeper holds the node stopped. Switching
    # would start nothing and the probation would blame the release.
    await rig.install_first()
    rig.node.held = True
    rig.release("1.0.1")
    await rig.cycles(1)
    assert rig.reasons() == ["node_held"], rig.describe()
    assert "the keeper holds the node stopped" in rig.entries("node_held")[0]["message"]
    assert rig.journal()["current"] == "1.0.0" and rig.journal()["failed"] == []
    assert rig.node.switches == ["1.0.0"]
    assert rig.reports.kinds() == ["update_succeeded"]  # not reported: no release at fault
    rig.node.held = False
    await rig.cycles(1)
    assert rig.journal()["current"] == "1.0.1", rig.describe()
    assert rig.node.switches == ["1.0.0", "1.0.1"]


async def test_preflight_failure_is_remembered_and_the_node_untouched(rig: Rig) -> None:
    await rig.install_first()
    rig.release("1.0.1", "broken_version")
    await rig.cycles(1)
    assert rig.journal()["failed"] == ["1.0.1"], rig.describe()
    [entry] = rig.entries("preflight_failed")
    assert "failed at preflight" in entry["message"] and "stays on 1.0.0" in entry["message"]
    assert rig.steps[len(FIRST_INSTALL) :] == ["download", "verify", "unpack", "preflight", "-"]
    assert rig.node.started == ["1.0.0"]
    assert rig.installed_versions() == ["1.0.0"]  # 1.0.1 deleted
    await rig.cycles(3)
    assert rig.updates_to("1.0.1") == 1 and rig.node.started == ["1.0.0"]
    assert rig.cycle.checks == 5


async def test_old_version_that_cannot_be_deleted_is_retried(
    rig: Rig, immutable: Immutable
) -> None:
    await rig.install_first()
    versions = rig.layout.versions / PROCESS
    # A file of 1.0.0 that the OS refuses to delete (as a file held open on Windows).
    held = versions / "1.0.0" / "nodekeeper-artifact.json"
    immutable.set(held)
    rig.release("1.0.1")
    await rig.cycles(1)
    rig.release("1.0.2")
    await rig.cycles(1)
    assert len(rig.entries("delete-failed")) == 1
    [moved] = [p for p in versions.iterdir() if p.name.startswith("1.0.0.old-")]
    immutable.moved(held, moved / held.name)
    assert not (versions / "1.0.0").exists()  # renamed first: never half a version
    assert "cannot delete" in rig.log.text()
    await rig.cycles(3)  # retried every cycle, indexed once
    assert len(rig.entries("delete-failed")) == 1
    assert rig.node.state() == "running"  # the node served on through the retries
    assert rig.log.text().count("cannot delete") >= 4
    immutable.release()
    await rig.cycles(1)
    assert rig.installed_versions() == ["1.0.1", "1.0.2"]
    assert rig.node.running_version() == "1.0.2"


async def test_out_of_space_during_migration_rolls_back_and_retries(rig: Rig) -> None:
    await rig.install_first()
    rig.node.script("1.0.1", out_of_space())
    rig.release("1.0.1")
    await rig.cycles(1)
    [entry] = rig.entries("out_of_space")
    assert "ran out of disk space" in entry["message"]
    assert "tries it again next cycle" in entry["message"]
    journal = rig.journal()
    assert journal["current"] == "1.0.0" and journal["failed"] == []  # not remembered
    assert journal["inflight"] is None and rig.node.running_version() == "1.0.0"
    assert rig.reports.kinds() == ["update_succeeded", "out_of_space"]
    # The operator frees space; the next cycle tries 1.0.1 again and it works.
    rig.node.script("1.0.1", healthy())
    await rig.cycles(1)
    assert rig.journal()["current"] == "1.0.1" and rig.updates_to("1.0.1") == 2
    assert rig.node.started == ["1.0.0", "1.0.1", "1.0.0", "1.0.1"]


async def test_node_not_configured_no_update_loop(rig: Rig) -> None:
    rig.node.set_up = False
    rig.publish("1.0.0")
    rig.start()
    await rig.cycles(1)
    # Installed (verified, preflighted) although the node cannot prove its health.
    assert rig.journal()["current"] == "1.0.0", rig.describe()
    assert rig.node.state() == "needs-setup"
    assert "cannot prove its health: the node is not set up" in rig.log.text()
    rig.release("1.0.1")
    await rig.cycles(3)
    # No switch while nobody has set the node up: no update loop, no rollback storm.
    journal = rig.journal()
    assert journal["current"] == "1.0.0" and journal["failed"] == []
    assert "rolled back" not in rig.log.text() and rig.updates_to("1.0.1") == 0
    assert rig.log.text().count("updates of storagenode wait") == 1
    assert rig.node.switches == ["1.0.0"]
    # Setup happens; the supervisor's recheck starts 1.0.0, then the update proceeds.
    rig.node.setup_done()
    await rig.cycles(1)
    assert rig.journal()["current"] == "1.0.1" and rig.node.running_version() == "1.0.1"
    assert rig.node.started == ["1.0.0", "1.0.0", "1.0.1"]


async def test_journal_that_cannot_be_written_never_stacks_updates(
    rig: Rig, immutable: Immutable
) -> None:
    """The state dir refuses writes while the new version is on probation: the commit
    cannot be journaled. The node stays on the new version, no second update starts over
    the first, and once the dir is writable again the commit completes."""
    await rig.install_first()
    state_dir = rig.layout.state

    def refuse_writes_once_on_probation(step: str) -> None:
        if step == "probation" and not refused:
            refused.append(step)
            immutable.set(state_dir)

    refused: list[str] = []
    rig.recording.after_write = refuse_writes_once_on_probation
    rig.release("1.0.1")
    await rig.cycles(3)
    assert rig.journal()["inflight"]["step"] == "probation", rig.describe()
    [entry] = rig.entries("journal_write_failed")
    assert "cannot write the update journal" in entry["message"]
    assert "resuming an interrupted update" in rig.log.text()
    assert not [r for r in rig.log.records if r.exc_info or r.levelno >= logging.ERROR]
    assert rig.updates_to("1.0.1") == 1  # never a second update over the first
    assert rig.node.switches == ["1.0.0", "1.0.1"] and rig.node.running_version() == "1.0.1"
    immutable.release(state_dir)
    await rig.cycles(1)
    journal = rig.journal()
    assert (journal["current"], journal["previous"], journal["inflight"]) == (
        "1.0.1",
        "1.0.0",
        None,
    )
