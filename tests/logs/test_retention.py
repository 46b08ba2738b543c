"""Retention by age, with a clock the test moves, and the cap when compression fails."""

from __future__ import annotations

import gzip
import os
import time

import pytest

from nodekeeper.logs import LogSettings, RotatingFile, RotatingLog
from nodekeeper.logs.policy import archive_filename, parse_archive_filename

from .helpers import FakeClock, all_lines, archives, snapshot

DAY = 86400.0
NOON = 1_795_780_800.0  # 2026-11-27T12:00:00Z


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_archives_older_than_retention_are_deleted(tmp_path):
    clock = FakeClock(NOON)
    log = RotatingLog(tmp_path, "node", LogSettings(retention="3d"), clock=clock)
    for day in range(10):
        log.write(f"day {day}")
        clock.advance(DAY)
    log.write("day 10")  # rotates day 9 away; retention runs with every rotation
    # Archive of day k was closed at noon of day k+1. Now is noon of day 10, so day 6's
    # newest line is exactly three days old (kept) and day 5's is older (deleted).
    assert log.file.directory.wait_idle()
    kept = [gzip.decompress(p.read_bytes()).decode() for p in archives(tmp_path, "node")]
    assert [line.split()[-1] for line in kept] == ["6", "7", "8", "9"]
    closed = [parse_archive_filename(p.name).closed_at for p in archives(tmp_path, "node")]
    assert all(clock.now - c <= 3 * DAY for c in closed)

    # Nothing written for a week: the periodic pass still removes every old archive,
    # and never the active file, however old it is.
    clock.advance(7 * DAY)
    log.file.directory.enforce()
    assert archives(tmp_path, "node") == []
    assert "day 10" in (tmp_path / "node.log").read_text()
    log.close(timeout=None)


def test_retention_boundary_is_exact(tmp_path):
    closed_at = NOON - 2 * DAY
    old = tmp_path / (archive_filename("node", ".log", closed_at, 0) + ".gz")
    old.write_bytes(gzip.compress(b"old\n"))
    clock = FakeClock(closed_at + 2 * DAY)  # exactly the retention: kept
    f = RotatingFile(tmp_path, "node", ".log", LogSettings(retention="2d"), clock=clock)
    f.directory.enforce()
    assert old.exists()
    clock.advance(1)  # a second older than the retention: gone
    f.directory.enforce()
    assert not old.exists()
    f.close()


def test_cap_holds_when_compression_fails(tmp_path):
    """Every compression fails on a real error (a directory sits where the .gz.tmp must
    go): rotated files stay uncompressed, count at full size, and the oldest go first.
    Once the obstacles go, the survivors are compressed on retry."""
    clock = FakeClock(NOON)  # frozen: archive names are known in advance
    settings = LogSettings(max_file_size="8KiB", total_cap="40KiB", rotate_daily=False)
    f = RotatingFile(tmp_path, "node", ".log", settings, clock=clock)
    obstacles = [
        tmp_path / (archive_filename("node", ".log", NOON, seq) + ".gz.tmp") for seq in range(40)
    ]
    for path in obstacles:
        path.mkdir()
    # Lines of random hex: compressible, but the budget must assume nothing.
    lines = [b"%06d %s\n" % (i, os.urandom(40).hex().encode()) for i in range(3000)]
    for line in lines:
        f.write(line)
        snap = snapshot(tmp_path, {"node.log"} | {p.name for p in obstacles})
        assert snap is not None and snap.archived <= 40 * 1024
    kept = archives(tmp_path, "node")
    assert 3 <= len(kept) <= 5 and all(p.name.endswith(".log") for p in kept)
    assert all_lines(tmp_path, "node") == [
        x.rstrip() for x in lines[-len(all_lines(tmp_path, "node")) :]
    ]

    for path in obstacles:
        path.rmdir()
    deadline = time.monotonic() + 15
    while any(p.name.endswith(".log") for p in archives(tmp_path, "node")):
        assert time.monotonic() < deadline, "compression was not retried"
        time.sleep(0.05)
    got = all_lines(tmp_path, "node")
    assert got == [x.rstrip() for x in lines[-len(got) :]]
    f.close(timeout=None)


def test_retention_runs_without_writes(tmp_path, monkeypatch):
    """The compressor thread applies retention on its own every minute (here every
    50 ms), so a log that went quiet still loses its old archives."""
    from nodekeeper.logs import directory

    monkeypatch.setattr(directory, "MAINTENANCE_INTERVAL", 0.05)
    clock = FakeClock(NOON)
    log = RotatingLog(tmp_path, "node", LogSettings(retention="1d"), clock=clock)
    log.write("yesterday")
    clock.advance(DAY)
    log.write("today")  # rotates "yesterday" away
    assert log.file.directory.wait_idle()
    assert len(archives(tmp_path, "node")) == 1
    clock.advance(DAY + 1)  # its newest line is now older than a day
    deadline = time.monotonic() + 10
    while archives(tmp_path, "node"):
        assert time.monotonic() < deadline, "retention never ran"
        time.sleep(0.02)
    assert "today" in (tmp_path / "node.log").read_text()
    log.close()
