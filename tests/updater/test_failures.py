"""The seed document's failure cases around an update, each created for real: the
download fails or is corrupted, the new version fails preflight, the old version cannot
be stopped or deleted, the disk fills during the new version's migration, the node is not
configured. Each: a clear log line, an error-index entry, the node kept on its last good
version where that is safe, and a retry on the next cycle."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from tests.nodes import DEV_NODE, NodeSetup
from tests.support import free_port
from tests.updater.httpserver import FileServer

from .lab import Lab

pytestmark = pytest.mark.timeout(180)


def entries(lab: Lab, reason: str) -> list[dict]:
    return [e for e in lab.error_index() if e.get("reason") == reason]


def test_download_failures_retry_next_cycle_with_the_node_untouched(lab: Lab) -> None:
    good = lab.artifact("1.0.1")
    data = good.read_bytes()
    with FileServer() as files:
        url = files.add("/storagenode_1.0.1.zip", data)
        lab.publish("1.0.0")
        lab.start_keeper()
        lab.wait_running("1.0.0")
        lab.put_piece("p1", b"e" * 3000)
        pid = lab.node_pid()
        lab.publish_url("1.0.1", url)  # the CLI fetches it once to record sha256 and size
        files.fault(status=500)  # cycle 1: server error
        files.fault(close_after=len(data) // 2)  # cycle 2: cut mid-body (.part kept)
        files.fault(extra=b"tampered")  # cycle 3: more bytes than announced
        lab.roll_out("1.0.1")
        lab.wait_running("1.0.1", timeout=40)
    kinds = lab.reasons()
    assert kinds.count("download_failed") == 2 and kinds.count("verification_failed") == 1
    assert "answered HTTP 500" in entries(lab, "download_failed")[0]["message"]
    assert "the node stays on 1.0.0; the keeper tries again next cycle" in lab.log_text()
    # The node ran untouched through all three failed attempts.
    switched = [e for e in lab.status()["exits"] if e["reason"] == "switched"]
    assert len(switched) == 1
    assert pid is not None
    lab.wait(lambda: {"download_failed", "verification_failed"} <= set(lab.report_kinds()), 15)
    assert lab.journal()["failed"] == []
    lab.check_pieces()


def test_preflight_failure_is_remembered_and_the_node_untouched(lab: Lab) -> None:
    lab.publish("1.0.0")
    lab.start_keeper()
    lab.wait_running("1.0.0")
    pid = lab.node_pid()
    lab.release("1.0.1", "broken_version")
    lab.wait(lambda: "1.0.1" in (lab.journal() or {}).get("failed", []), 30, "1.0.1 failed")
    [entry] = entries(lab, "preflight_failed")
    assert "failed at preflight" in entry["message"] and "stays on 1.0.0" in entry["message"]
    assert lab.node_pid() == pid
    lab.wait(lambda: not (lab.data_dir / "versions" / "storagenode" / "1.0.1").exists(), 10)
    time.sleep(2.5)
    assert lab.log_text().count("→ 1.0.1") == 1
    assert lab.node_pid() == pid


def test_old_version_that_cannot_be_stopped_is_killed_and_replaced(lab: Lab) -> None:
    # 1.0.0 hangs 2 s after its first pulse: requests (the shutdown endpoint too) block
    # and SIGTERM is ignored. The probe threshold is high so the supervisor leaves it be
    # until the update's switch has to stop it.
    lab.config(probe={"failure_threshold": 10_000}, stop={"timeout_seconds": 2.0})
    lab.publish("1.0.0", "hang_after_start", hang_after=2, ignore_stop=True)
    lab.start_keeper()
    lab.wait_running("1.0.0")
    lab.wait(lambda: lab.pulse() is None, 10, "1.0.0 to hang")
    lab.release("1.0.1")
    lab.wait_running("1.0.1", timeout=40)
    [entry] = entries(lab, "stop-timeout")
    assert "did not stop within 2 s" in entry["message"]
    assert "killing its process tree" in lab.log_text()


def _chattr(flag: str, path: Path) -> bool:
    if shutil.which("chattr") is None:
        return False
    return subprocess.run(["chattr", flag, str(path)], capture_output=True).returncode == 0


@pytest.fixture
def immutable(tmp_path: Path) -> Iterator[list[Path]]:
    probe = tmp_path / "probe"
    probe.write_bytes(b"")
    if not _chattr("+i", probe):
        pytest.skip("chattr cannot set inode flags here (needs root on ext4/xfs/btrfs)")
    _chattr("-i", probe)
    flagged: list[Path] = []
    yield flagged
    for path in flagged:
        _chattr("-i", path)


def test_old_version_that_cannot_be_deleted_is_retried(lab: Lab, immutable: list[Path]) -> None:
    lab.publish("1.0.0")
    lab.start_keeper()
    lab.wait_running("1.0.0")
    versions = lab.data_dir / "versions" / "storagenode"
    # A file of 1.0.0 that the OS refuses to delete (as a file held open on Windows).
    held = versions / "1.0.0" / "nodekeeper-artifact.json"
    assert _chattr("+i", held)
    lab.release("1.0.1")
    lab.wait_running("1.0.1")
    lab.release("1.0.2")
    lab.wait_running("1.0.2")
    lab.wait(lambda: entries(lab, "delete-failed"), 10, "a delete-failed entry")
    [moved] = [p for p in versions.iterdir() if p.name.startswith("1.0.0.old-")]
    immutable.append(moved / "nodekeeper-artifact.json")
    assert not (versions / "1.0.0").exists()  # renamed first: never half a version
    assert "cannot delete" in lab.log_text()
    time.sleep(2.5)  # retried every cycle, indexed once
    assert len(entries(lab, "delete-failed")) == 1
    assert lab.status()["state"] == "running"
    _chattr("-i", moved / "nodekeeper-artifact.json")
    lab.wait(lambda: sorted(p.name for p in versions.iterdir()) == ["1.0.1", "1.0.2"], 10)


@pytest.fixture
def small_node(tmp_path: Path) -> Iterator[Path]:
    """A real 12 MiB tmpfs for the node's config and storage."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(directory: Path) -> Path:
    """Write until the file system is full; returns the filler file."""
    filler = directory / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


def test_out_of_space_during_migration_rolls_back_and_retries(
    tmp_path: Path, small_node: Path
) -> None:
    lab = Lab(tmp_path / "lab", allocated="2 MB", storage_root=small_node)
    try:
        lab.publish("1.0.0")
        lab.start_keeper()
        lab.wait_running("1.0.0")
        lab.put_piece("p1", b"f" * 3000)
        filler = fill(small_node)
        lab.release("1.0.1", extra_migration=1)
        lab.wait(lambda: entries(lab, "out_of_space"), 40, "an out_of_space entry")
        [entry] = entries(lab, "out_of_space")
        assert "ran out of disk space" in entry["message"]
        assert "tries it again next cycle" in entry["message"]
        journal = lab.wait(lambda: (j := lab.journal()) and not j["inflight"] and j, 20)
        assert journal["current"] == "1.0.0" and journal["failed"] == []  # not remembered
        lab.wait(lambda: "out_of_space" in lab.report_kinds(), 15, "an out_of_space report")
        # The operator frees space; the next cycle tries 1.0.1 again and it works.
        filler.unlink()
        lab.wait_running("1.0.1", timeout=40)
        lab.check_pieces()
    finally:
        lab.close()


def test_node_not_configured_no_update_loop(tmp_path: Path) -> None:
    root = tmp_path / "lab"
    node = NodeSetup(root / "node" / "config", root / "node" / "storage", free_port(), free_port())
    lab = Lab(root, setup=node)
    try:
        lab.publish("1.0.0")
        lab.start_keeper()
        # Installed (verified, preflighted) although the node cannot prove its health.
        lab.wait(lambda: (lab.journal() or {}).get("current") == "1.0.0", 30, "1.0.0 installed")
        lab.wait(lambda: (lab.status() or {}).get("state") == "needs-setup", 20)
        lab.release("1.0.1")
        time.sleep(3)
        # No switch while nobody has set the node up: no update loop, no rollback storm.
        assert lab.journal()["current"] == "1.0.0" and lab.journal()["failed"] == []
        assert "rolled back" not in lab.log_text()
        assert lab.log_text().count("→ 1.0.1") == 0
        assert lab.log_text().count("updates of storagenode wait") == 1
        assert lab.reasons().count("needs-setup") == 1
        # Setup happens; the keeper's recheck starts 1.0.0, then the update proceeds.
        result = subprocess.run(
            [
                *DEV_NODE,
                "setup",
                "--config-dir",
                str(node.config_dir),
                "--storage-dir",
                str(node.storage_dir),
                "--allocated",
                "50 MB",
                "--listen",
                f"127.0.0.1:{node.port}",
                "--control-listen",
                f"127.0.0.1:{node.control_port}",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stderr
        lab.wait_running("1.0.1", timeout=40)
    finally:
        lab.close()


def test_journal_that_cannot_be_written_never_stacks_updates(
    lab: Lab, immutable: list[Path]
) -> None:
    """The state dir refuses writes (immutable) while the new version is on probation:
    the commit cannot be journaled. The node stays on the new version, no second update
    starts over the first, and once the dir is writable again the commit completes."""
    lab.publish("1.0.0")
    lab.start_keeper(update={"probation_seconds": 2.0})
    lab.wait_running("1.0.0")
    lab.release("1.0.1")
    lab.wait(lambda: ((lab.journal() or {}).get("inflight") or {}).get("step") == "probation", 30)
    state_dir = lab.data_dir / "state"
    assert _chattr("+i", state_dir)
    immutable.append(state_dir)
    lab.wait(lambda: "resuming an interrupted update" in lab.log_text(), 20, "a resume")
    time.sleep(1.5)
    [entry] = [e for e in lab.error_index() if e.get("reason") == "journal_write_failed"]
    assert "cannot write the update journal" in entry["message"]
    assert "Traceback" not in lab.log_text()
    assert lab.journal()["inflight"]["step"] == "probation"  # nothing could be written
    assert lab.log_text().count("→ 1.0.1") == 1  # never a second update over the first
    assert lab.pulse()["version"] == "1.0.1"
    _chattr("-i", state_dir)
    lab.wait_running("1.0.1")
    assert lab.journal()["previous"] == "1.0.0"


def test_control_plane_outage_backs_off_and_leaves_the_node_alone(lab: Lab) -> None:
    lab.publish("1.0.0")
    lab.start_keeper()
    lab.wait_running("1.0.0")
    pid = lab.node_pid()
    lab.cp.stop()
    lab.wait(lambda: lab.status()["update"]["failed_checks_in_row"] >= 3, 20, "failed checks")
    lines = [line for line in lab.log_text().splitlines() if "update check failed" in line]
    assert [" WARNING " in line for line in lines[:3]] == [True, False, False]  # said once
    # Backoff: 0.5 s, then 1 s (± 10 % jitter) between the failed checks.
    times = [datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f") for line in lines[:3]]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert 0.4 < gaps[0] < 0.9 and 0.85 < gaps[1] < 1.6 and gaps[1] > gaps[0], gaps
    [entry] = [e for e in lab.error_index() if e.get("reason") == "check_failed"]
    assert "cannot reach the control plane" in entry["message"]
    assert lab.node_pid() == pid and lab.status()["state"] == "running"
    lab.cp.start()
    lab.release("1.0.1")
    lab.wait_running("1.0.1", timeout=30)
    assert lab.status()["update"]["failed_checks_in_row"] == 0


def test_checks_send_if_none_match_and_honour_retry_after(lab: Lab) -> None:
    """The announcement is served by a controllable server (the control plane's own
    document): a 503 with Retry-After: 3 holds the next check back 3 s, far beyond the
    0.5 s backoff, and unchanged documents are fetched conditionally (304)."""
    lab.publish("1.0.0")
    document = httpx.get(lab.cp.url + "/", timeout=5).content
    with FileServer() as announcer:
        announcer.add("/", document, etag=True)
        lab.config(update={"server": announcer.url})
        lab.start_keeper()
        lab.wait_running("1.0.0")
        lab.wait(lambda: any(s.status == 304 for s in announcer.served), 10, "a 304")
        assert all(s.if_none_match for s in announcer.served[1:])
        announcer.fault(status=503, retry_after="3")
        arrived: dict[int, float] = {}  # request index → when this test first saw it
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            count = len(announcer.served)
            arrived.setdefault(count - 1, time.monotonic())
            statuses = [s.status for s in announcer.served]
            if 503 in statuses and count > statuses.index(503) + 1:
                break
            time.sleep(0.005)
        refused = [s.status for s in announcer.served].index(503)
        waited = arrived[refused + 1] - arrived[refused]
        assert waited >= 2.9, waited
        assert lab.node_pid() is not None
