"""Rotation by size and by day, restarts, formats and many writers, on real files."""

from __future__ import annotations

import gzip
import json
import logging
import os
import threading
import time
from collections import defaultdict

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


def small(**kw) -> LogSettings:
    return LogSettings(**{"max_file_size": "4KiB", "total_cap": "1MiB", **kw})


def test_rotates_before_a_line_would_pass_the_size(tmp_path):
    f = RotatingFile(tmp_path, "node", ".log", small(rotate_daily=False))
    line = b"y" * 99 + b"\n"
    for _ in range(200):
        f.write(line)
    f.close(timeout=None)
    kept = archives(tmp_path, "node")
    assert len(kept) == 200 // 40 - 1  # 4096 // 100 = 40 lines per file
    for p in kept:
        assert p.name.endswith(".log.gz")
        data = gzip.decompress(p.read_bytes())
        assert len(data) == 4000 and data == line * 40
    assert all_lines(tmp_path, "node") == [line.rstrip()] * 200


def test_a_line_longer_than_the_limit_is_written_whole(tmp_path):
    f = RotatingFile(tmp_path, "node", ".log", small())
    f.write(b"a\n")
    f.write(b"b" * 10_000 + b"\n")
    f.write(b"c\n")
    f.close(timeout=None)
    assert all_lines(tmp_path, "node") == [b"a", b"b" * 10_000, b"c"]
    assert [
        len(read)
        for read in map(gzip.decompress, (p.read_bytes() for p in archives(tmp_path, "node")))
    ] == [2, 10_001]


def test_rotates_at_local_midnight_and_not_for_an_empty_day(tmp_path, monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Kolkata")  # midnight is 18:30 UTC
    time.tzset()
    clock = FakeClock(NOON)
    log = RotatingLog(tmp_path, "node", small(), clock=clock)
    log.write("before midnight")
    clock.now = NOON + 6.5 * 3600 - 0.001  # 23:59:59.999 local
    log.write("last of the day")
    clock.advance(0.001)
    log.write("first of the next day")
    clock.advance(3 * DAY)  # three silent days: no empty archives for them
    log.write("three days later")
    log.close(timeout=None)
    kept = archives(tmp_path, "node")
    assert len(kept) == 2
    first = gzip.decompress(kept[0].read_bytes()).decode()
    assert "before midnight" in first and "last of the day" in first
    assert "first of the next day" in gzip.decompress(kept[1].read_bytes()).decode()
    assert "three days later" in (tmp_path / "node.log").read_text()
    assert "first of the next day" not in (tmp_path / "node.log").read_text()


def test_no_daily_rotation_when_turned_off(tmp_path):
    clock = FakeClock(NOON)
    log = RotatingLog(tmp_path, "node", small(rotate_daily=False), clock=clock)
    for _ in range(5):
        log.write("a day")
        clock.advance(DAY)
    log.close(timeout=None)
    assert archives(tmp_path, "node") == []
    assert (tmp_path / "node.log").read_text().count("a day") == 5


def test_restart_appends_and_continues_the_sequence(tmp_path):
    clock = FakeClock(NOON)
    for run in range(3):
        f = RotatingFile(tmp_path, "node", ".log", small(), clock=clock)
        for i in range(100):
            f.write(b"run %d line %03d %s\n" % (run, i, b"z" * 60))
        f.close(timeout=None)
    seqs = [parse_archive_filename(p.name).seq for p in archives(tmp_path, "node")]
    assert seqs == list(range(len(seqs)))
    lines = all_lines(tmp_path, "node")
    assert lines == [
        b"run %d line %03d %s" % (r, i, b"z" * 60) for r in range(3) for i in range(100)
    ]


def test_a_file_from_yesterday_rotates_at_the_first_line_today(tmp_path):
    active = tmp_path / "node.log"
    active.write_bytes(b"old line\n")
    yesterday = NOON - DAY
    os.utime(active, (yesterday, yesterday))
    f = RotatingFile(tmp_path, "node", ".log", small(), clock=FakeClock(NOON))
    f.write(b"new line\n")
    f.close(timeout=None)
    assert active.read_bytes() == b"new line\n"
    assert [gzip.decompress(p.read_bytes()) for p in archives(tmp_path, "node")] == [b"old line\n"]


def test_leftovers_of_a_crash_are_finished_at_start(tmp_path):
    """A rotated file not yet compressed is compressed; a .gz.tmp (always incomplete)
    is removed; a source whose .gz is complete is removed."""
    waiting = archive_filename("node", ".log", NOON - 60, 0)
    (tmp_path / waiting).write_bytes(b"waiting\n")
    done = archive_filename("node", ".log", NOON - 30, 1)
    (tmp_path / done).write_bytes(b"done\n")
    (tmp_path / (done + ".gz")).write_bytes(gzip.compress(b"done\n"))
    cut = archive_filename("node", ".log", NOON - 10, 2)
    (tmp_path / cut).write_bytes(b"cut\n")
    (tmp_path / (cut + ".gz.tmp")).write_bytes(b"\x1f\x8b half")
    (tmp_path / "operator-notes.txt").write_text("not ours, never touched")
    f = RotatingFile(tmp_path, "node", ".log", small(), clock=FakeClock(NOON))
    f.write(b"now\n")
    f.close(timeout=None)
    names = sorted(os.listdir(tmp_path))
    assert names == sorted(
        [waiting + ".gz", done + ".gz", cut + ".gz", "node.log", "operator-notes.txt"]
    )
    assert all_lines(tmp_path, "node") == [b"waiting", b"done", b"cut", b"now"]


def test_json_format(tmp_path):
    log = RotatingLog(tmp_path, "node", small(format="json"), clock=FakeClock(NOON))
    log.write("hello\n", logging.WARNING, source="piecestore")
    log.write('multi\nline "quoted"')
    log.close()
    rows = [json.loads(line) for line in (tmp_path / "node.log").read_text().splitlines()]
    assert rows == [
        {
            "time": "2026-11-27T12:00:00.000Z",
            "level": "WARNING",
            "source": "piecestore",
            "message": "hello",
        },
        {
            "time": "2026-11-27T12:00:00.000Z",
            "level": "INFO",
            "source": "node",
            "message": 'multi\nline "quoted"',
        },
    ]


def test_text_format_and_undecodable_bytes(tmp_path):
    log = RotatingLog(tmp_path, "node", small(), clock=FakeClock(NOON))
    stray = b"caf\xe9".decode("utf-8", "surrogateescape")  # a node printing Latin-1
    log.write(f"upload {stray}", logging.ERROR)
    log.close()
    assert (tmp_path / "node.log").read_bytes() == (
        b"2026-11-27T12:00:00.000Z ERROR    node upload caf\\udce9\n"
    )


@pytest.mark.parametrize("name", ["", "a.b", "../x", "x" * 65, "sp ace"])
def test_bad_names_are_refused(tmp_path, name):
    with pytest.raises(ValueError, match="log name"):
        RotatingFile(tmp_path, name, ".log", small())


def test_writing_after_close_is_an_error(tmp_path):
    f = RotatingFile(tmp_path, "node", ".log", small())
    f.close()
    f.close()  # twice is fine
    with pytest.raises(ValueError, match="closed"):
        f.write(b"late\n")


def test_many_threads_writing_at_once(tmp_path):
    """Eight threads, one log, constant rotation: every line arrives once, whole, and in
    each thread's order."""
    settings = LogSettings(max_file_size="64KiB", total_cap="64MiB")
    log = RotatingLog(tmp_path, "node", settings)
    threads, per_thread = 8, 20_000
    start = threading.Barrier(threads)

    def writer(t: int) -> None:
        start.wait()
        for i in range(per_thread):
            log.write(f"t{t} {i} " + "p" * (i % 50))

    workers = [threading.Thread(target=writer, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    log.close(timeout=None)
    assert len(archives(tmp_path, "node")) > 100
    seen: dict[str, list[int]] = defaultdict(list)
    for line in all_lines(tmp_path, "node"):
        _, level, source, tag, number, *pad = line.decode().split()
        assert (level, source) == ("INFO", "node")
        assert pad == ([] if int(number) % 50 == 0 else ["p" * (int(number) % 50)]), line
        seen[tag].append(int(number))
    assert {tag: numbers for tag, numbers in seen.items()} == {
        f"t{t}": list(range(per_thread)) for t in range(threads)
    }


def test_two_logs_share_one_directory_cap(tmp_path):
    settings = LogSettings(max_file_size="4KiB", total_cap="40KiB")
    a = RotatingFile(tmp_path, "keeper", ".log", settings)
    b = RotatingFile(tmp_path, "node", ".log", settings)
    line = b"%s\n" % (os.urandom(60).hex().encode())  # incompressible-ish
    assert a.directory is b.directory
    for i in range(3000):
        a.write(line)
        b.write(line)
        if i % 50 == 0:
            snap = snapshot(tmp_path, {"keeper.log", "node.log"})
            assert snap is not None and snap.archived <= 40 * 1024
    a.close(timeout=None)
    b.close(timeout=None)
    archived = sum(
        os.path.getsize(tmp_path / n)
        for n in os.listdir(tmp_path)
        if n not in ("keeper.log", "node.log")
    )
    assert 0 < archived <= 40 * 1024
    assert archives(tmp_path, "keeper") and archives(tmp_path, "node")
