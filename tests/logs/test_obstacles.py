"""Files that cannot be renamed or deleted, made so for real.

On Windows an antivirus or an editor holding a log open makes rename and delete fail
with WinError 32 (PermissionError). These tests need the same failure from the real
file system on Linux, where the suite runs as root and permission bits stop nothing.
We use ext4's inode flags through ``chattr``: ``+a`` (append-only) makes rename and
delete fail with EPERM while appending still works (exactly the Windows "held open by
a reader" case for the active file), and ``+i`` (immutable) makes delete fail for an
archive. Both are real kernel refusals through the same os.rename / os.unlink calls
the code makes; nothing is injected. Skipped where chattr cannot set flags (not root,
or a file system without them, such as tmpfs).
"""

from __future__ import annotations

import contextlib
import gzip
import random
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from nodekeeper.logs import LogSettings, RotatingFile
from nodekeeper.logs.policy import archive_filename, parse_archive_filename

from .helpers import FakeClock, all_lines, archives, read_file, snapshot


def _chattr(flag: str, path: Path) -> bool:
    if shutil.which("chattr") is None:
        return False
    return subprocess.run(["chattr", flag, str(path)], capture_output=True).returncode == 0


@pytest.fixture
def flags(tmp_path):
    """Set inode flags; every flag set is cleared at the end, even on failure, so that
    pytest can remove the files."""
    probe = tmp_path / "probe"
    probe.write_bytes(b"")
    if not _chattr("+i", probe):
        pytest.skip("chattr cannot set inode flags here (needs root on ext4/xfs/btrfs)")
    _chattr("-i", probe)
    probe.unlink()
    flagged: list[tuple[str, Path]] = []

    class Flags:
        def set(self, flag: str, path: Path) -> None:
            assert _chattr("+" + flag, path), f"chattr +{flag} {path}"
            flagged.append((flag, path))

        def clear(self, flag: str, path: Path) -> None:
            assert _chattr("-" + flag, path)
            flagged.remove((flag, path))

    yield Flags()
    for flag, path in flagged:
        with contextlib.suppress(OSError):
            _chattr("-" + flag, path)


def line(i: int) -> bytes:
    # Pseudo-random hex, the same for the same i: compresses about 2:1 like real logs
    # do, so the cap is reached by archives, not only by files waiting for gzip.
    return b"%06d %s\n" % (i, random.Random(i).randbytes(45).hex().encode())


def test_active_file_that_cannot_be_renamed(tmp_path, flags):
    """The active file refuses rename: the writer keeps appending past the size limit,
    loses nothing, and rotates as soon as the obstacle is gone."""
    settings = LogSettings(max_file_size="8KiB", total_cap="1MiB")
    f = RotatingFile(tmp_path, "node", ".log", settings)
    active = tmp_path / "node.log"
    f.write(line(0))
    flags.set("a", active)
    with pytest.raises(PermissionError):
        active.rename(tmp_path / "elsewhere")  # the obstacle is real
    for i in range(1, 400):  # ~40 KB, five times the limit
        f.write(line(i))
    assert archives(tmp_path, "node") == []
    assert f.rotation_failures > 0
    assert active.stat().st_size == 400 * len(line(0))

    flags.clear("a", active)
    n = 400
    deadline = time.monotonic() + 10
    while not archives(tmp_path, "node"):  # retried after a backoff or more bytes
        assert time.monotonic() < deadline, "rotation was never retried"
        f.write(line(n))
        n += 1
        time.sleep(0.001)
    for i in range(n, n + 300):
        f.write(line(i))
    f.close(timeout=None)
    assert all_lines(tmp_path, "node") == [line(i).rstrip() for i in range(n + 300)]
    assert f.dropped_lines == 0


def test_archive_that_cannot_be_deleted_is_skipped_and_retried(tmp_path, flags):
    """The oldest archive refuses deletion: the cap deletes newer ones instead and still
    holds, counting the stuck file; once free, it is deleted the next time the cap
    needs room."""
    cap = 40 * 1024
    settings = LogSettings(max_file_size="4KiB", total_cap=cap)
    f = RotatingFile(tmp_path, "node", ".log", settings)
    i = 0
    while len(archives(tmp_path, "node")) < 3:
        f.write(line(i))
        i += 1
    assert f.directory.wait_idle()
    stuck = archives(tmp_path, "node")[0]
    flags.set("i", stuck)
    with pytest.raises(PermissionError):
        stuck.unlink()
    for _ in range(3000):
        f.write(line(i))
        i += 1
        if i % 25 == 0:
            snap = snapshot(tmp_path, {"node.log"})
            assert snap is not None and snap.archived <= cap
    assert stuck.exists()
    kept = archives(tmp_path, "node")
    assert kept[0] == stuck and len(kept) >= 2
    # The cap went on deleting: the archives right after the stuck one are gone.
    assert parse_archive_filename(kept[1].name).seq > 5

    flags.clear("i", stuck)
    deadline = time.monotonic() + 15
    while stuck.exists():
        assert time.monotonic() < deadline, "the freed archive was never deleted"
        f.write(line(i))
        i += 1
        time.sleep(0.002)
    f.close(timeout=None)
    got = all_lines(tmp_path, "node")
    assert got == [line(k).rstrip() for k in range(i - len(got), i)], _describe(tmp_path)


def test_compressed_source_that_cannot_be_deleted(tmp_path, flags):
    """The compressor has written the .gz but the rotated file will not delete: both
    stay (counted against the cap), readers take the .gz, and the plain file goes once
    it can. A directory where the .gz.tmp must go holds compression back until the
    rotated file is flagged; both are real file-system refusals."""
    clock = FakeClock(1_795_780_800.0)
    settings = LogSettings(max_file_size="4KiB", total_cap="1MiB")
    f = RotatingFile(tmp_path, "node", ".log", settings, clock=clock)
    rotated = tmp_path / archive_filename("node", ".log", clock.now, 0)
    blocker = tmp_path / (rotated.name + ".gz.tmp")
    blocker.mkdir()
    i = 0
    while not rotated.exists():
        f.write(line(i))
        i += 1
    flags.set("i", rotated)
    blocker.rmdir()  # compression is retried after its backoff (about a second)
    gz = rotated.with_name(rotated.name + ".gz")
    deadline = time.monotonic() + 15
    while not gz.exists():
        assert time.monotonic() < deadline, "compression was not retried"
        time.sleep(0.02)
    assert rotated.exists()
    assert gzip.decompress(gz.read_bytes()) == rotated.read_bytes()
    assert all_lines(tmp_path, "node") == [line(k).rstrip() for k in range(i)]

    flags.clear("i", rotated)
    while rotated.exists():
        assert time.monotonic() < deadline + 15, "the duplicate was never deleted"
        time.sleep(0.02)
    f.close(timeout=None)
    assert all_lines(tmp_path, "node") == [line(k).rstrip() for k in range(i)]


def test_active_file_never_outgrows_the_cap_when_nothing_can_rotate(tmp_path, flags):
    """The whole directory refuses renames and deletes (``chattr +i`` on it; files in
    it can still be written): the active file grows past its limit, but once it is
    bigger than the whole cap it is emptied with a note saying how much was lost,
    because the cap is the promise that the disk never fills."""
    cap = 40 * 1024
    f = RotatingFile(tmp_path, "node", ".log", LogSettings(max_file_size="4KiB", total_cap=cap))
    flags.set("i", tmp_path)
    biggest = 0
    for i in range(2000):  # ~190 KB, almost five caps
        f.write(line(i))
        biggest = max(biggest, (tmp_path / "node.log").stat().st_size)
    assert biggest <= cap + len(line(0))
    assert f.discarded_bytes > 3 * cap
    assert archives(tmp_path, "node") == []
    text = (tmp_path / "node.log").read_bytes()
    assert text.startswith(b"[nodekeeper] ") and b"bytes of this log were discarded" in text

    flags.clear("i", tmp_path)
    for i in range(2000, 2400):
        f.write(line(i))
    f.close(timeout=None)
    got = [x for x in all_lines(tmp_path, "node") if not x.startswith(b"[nodekeeper]")]
    assert got == [line(k).rstrip() for k in range(2400 - len(got), 2400)]
    assert len(got) > 300  # what the cap holds once rotation works again


def _describe(directory: Path) -> str:
    """Which lines each file holds, for a failure message."""
    parts = []
    for p in [*archives(directory, "node"), directory / "node.log"]:
        lines = read_file(p).splitlines()
        parts.append(f"{p.name}: {len(lines)} lines {lines[0][:6]!r}..{lines[-1][:6]!r}")
    return "\n".join(parts)


def test_lines_wait_in_memory_while_the_file_cannot_be_written(tmp_path, flags):
    """The active file refuses even writes and reopening (``chattr +i`` on it): lines
    wait in memory, in order, and reach the file once it can be opened again; beyond
    the memory bound the oldest are dropped and counted, never silently."""
    settings = LogSettings(max_file_size="1MiB", total_cap="16MiB")
    f = RotatingFile(tmp_path, "node", ".log", settings)
    active = tmp_path / "node.log"
    f.write(line(0))
    flags.set("i", active)
    for i in range(1, 500):
        f.write(line(i))
    assert active.read_bytes() == line(0)
    assert f.dropped_lines == 0
    flags.clear("i", active)
    deadline = time.monotonic() + 10
    i = 500
    while active.stat().st_size == len(line(0)):  # reopened after about a second
        assert time.monotonic() < deadline, "the file was never reopened"
        f.write(line(i))
        i += 1
        time.sleep(0.01)
    f.close(timeout=None)
    assert all_lines(tmp_path, "node") == [line(k).rstrip() for k in range(i)]


def test_memory_for_waiting_lines_is_bounded(tmp_path, flags):
    from nodekeeper.logs.rotating import BACKLOG_LIMIT

    f = RotatingFile(tmp_path, "node", ".log", LogSettings())
    active = tmp_path / "node.log"
    f.write(line(0))
    flags.set("i", active)
    n = BACKLOG_LIMIT // len(line(0)) + 1000
    for i in range(1, n):
        f.write(line(i))
    flags.clear("i", active)
    f.close(timeout=None)  # closing writes what waits
    got = all_lines(tmp_path, "node")
    assert f.dropped_lines == n - len(got) > 0
    assert got[0] == line(0).rstrip()
    assert got[1:] == [line(k).rstrip() for k in range(n - len(got) + 1, n)]
