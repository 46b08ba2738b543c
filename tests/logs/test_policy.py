"""The pure decisions, exhaustively over small worlds and against brute-force references."""

from __future__ import annotations

import itertools
import math
import os
import time

import pytest

from nodekeeper.logs.policy import (
    ArchiveName,
    Candidate,
    archive_filename,
    day_end_for,
    next_local_midnight,
    parse_archive_filename,
    pick_to_compress,
    plan_eviction,
    retry_delay,
    rotation_reason,
)

# -- names -----------------------------------------------------------------------------


@pytest.mark.parametrize("closed_at", [0, 1, 86399.999, 1_764_225_259.7, 4_102_444_800])
@pytest.mark.parametrize("seq", [0, 1, 999_999, 1_000_000, 12_345_678])
@pytest.mark.parametrize("suffix", [".log", ".jsonl"])
def test_archive_names_round_trip(closed_at, seq, suffix):
    name = archive_filename("storage-node_1", suffix, closed_at, seq)
    assert parse_archive_filename(name) == ArchiveName(
        "storage-node_1", int(closed_at), seq, suffix, "plain"
    )
    assert parse_archive_filename(name + ".gz").kind == "gzip"
    assert parse_archive_filename(name + ".gz.tmp").kind == "partial"


def test_archive_names_sort_by_time_for_people():
    name = archive_filename("storagenode", ".log", 1_795_761_259.5, 42)
    assert name == "storagenode.20261127T063419Z.000042.log"


@pytest.mark.parametrize(
    "name",
    [
        "storagenode.log",
        "errors.jsonl",
        "storagenode.20261127T063419Z.log",
        "storagenode.20261127T063419Z.00042.log",  # too few digits to be ours
        "storagenode.20261127T063419Z.000042",
        "storagenode.20261127T063419Z.000042.log.tmp",  # only .gz.tmp is our partial
        "storagenode.20261127T063419Z.000042.log.gz.bak",
        "storagenode.20261327T063419Z.000042.log",  # month 13
        "storage.node.20261127T063419Z.000042.log",
        "notes.txt",
        ".20261127T063419Z.000042.log",
    ],
)
def test_foreign_names_are_not_archives(name):
    assert parse_archive_filename(name) is None


# -- when to rotate --------------------------------------------------------------------


def test_rotation_reason_exhaustive():
    max_size, day_end = 10, 100.0
    for size, incoming, now in itertools.product(range(0, 13), range(0, 13), (99.0, 100.0, 101.0)):
        reason = rotation_reason(size, incoming, max_size, now, day_end)
        if size == 0:
            expected = None  # an empty file never rotates, whatever comes
        elif size + incoming > max_size:
            expected = "size"
        elif now >= day_end:
            expected = "day"
        else:
            expected = None
        assert reason == expected, (size, incoming, now)


def test_a_file_never_exceeds_the_limit_unless_one_line_does():
    """Simulate a writer with every line length: each file ends <= max_size unless it
    holds a single line longer than max_size."""
    max_size = 16
    for lengths in itertools.product(range(1, 20), repeat=3):
        size, files = 0, [[]]
        for n in lengths * 3:
            if rotation_reason(size, n, max_size, 0.0, math.inf):
                files.append([])
                size = 0
            files[-1].append(n)
            size += n
        for f in files:
            assert sum(f) <= max_size or len(f) == 1, (lengths, files)


TZS = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]


@pytest.fixture(params=TZS)
def local_tz(request):
    old = os.environ.get("TZ")
    os.environ["TZ"] = request.param
    time.tzset()
    yield request.param
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()


def test_next_local_midnight_across_a_year_and_dst(local_tz):
    # Every 7 hours and 13 minutes through 2026, DST changes included.
    start = 1_767_225_600  # 2026-01-01T00:00:00Z
    for ts in range(start - 86400, start + 366 * 86400, 7 * 3600 + 13 * 60):
        midnight = next_local_midnight(ts)
        assert ts < midnight <= ts + 25 * 3600
        tm = time.localtime(midnight)
        assert (tm.tm_hour, tm.tm_min, tm.tm_sec) == (0, 0, 0)
        assert time.localtime(midnight - 1).tm_mday == time.localtime(ts).tm_mday


def test_day_end_is_infinite_without_daily_rotation():
    assert day_end_for(1e9, rotate_daily=False) == math.inf
    assert day_end_for(1e9, rotate_daily=True) == next_local_midnight(1e9)


def test_retry_delay_grows_and_is_capped():
    delays = [retry_delay(n) for n in range(0, 20)]
    assert delays[0] == 0
    assert delays[1] == 0.1
    assert all(a <= b for a, b in itertools.pairwise(delays))
    assert max(delays) == 10.0


# -- what to delete --------------------------------------------------------------------


def reference_eviction(cands, used, incoming, cap, now, max_age):
    """Brute force: the shortest oldest-first prefix (never past the busy file) that
    removes every expired file and makes room; else everything up to the busy file,
    unless nothing could make room."""
    order = sorted(cands, key=lambda c: (c.closed_at, c.seq, c.name))
    stop = next((i for i, c in enumerate(order) if c.busy), len(order))
    if used - sum(c.size for c in cands) + incoming > cap:
        # Hopeless: no deletion makes room, so only the expired prefix goes.
        k = 0
        while k < stop and order[k].closed_at < now - max_age:
            k += 1
        return [c.name for c in order[:k]], False, None
    for k in range(stop + 1):
        freed = sum(c.size for c in order[:k])
        fits = used - freed + incoming <= cap
        expired_left = any(c.closed_at < now - max_age for c in order[k:stop])
        if fits and not expired_left:
            return [c.name for c in order[:k]], True, None
    freed = sum(c.size for c in order[:stop])
    fits = used - freed + incoming <= cap
    cancel = order[stop].name if stop < len(order) and not fits else None
    return [c.name for c in order[:stop]], fits, cancel


def worlds():
    """Every world of up to four archives with sizes 1-3, two ages, and at most one busy."""
    for n in range(0, 5):
        for sizes in itertools.product((1, 3), repeat=n):
            for ages in itertools.product((0.0, 50.0), repeat=n):
                for busy_at in [None, *range(n)]:
                    yield [
                        Candidate(
                            f"f{i}", closed_at=ages[i], seq=i, size=sizes[i], busy=busy_at == i
                        )
                        for i in range(n)
                    ]


def test_plan_eviction_matches_brute_force_everywhere():
    checked = 0
    for cands in worlds():
        total = sum(c.size for c in cands)
        for extra, incoming, cap, now in itertools.product(
            (0, 2), (0, 1, 4), (0, 3, 6, 12), (60.0, 200.0)
        ):
            used = total + extra  # extra: bytes of files that may not be deleted
            plan = plan_eviction(
                cands, used=used, incoming=incoming, cap=cap, now=now, max_age=100.0
            )
            want = reference_eviction(cands, used, incoming, cap, now, 100.0)
            assert (list(plan.delete), plan.fits, plan.cancel) == want, (
                cands,
                used,
                incoming,
                cap,
                now,
            )
            checked += 1
    assert checked > 10_000


def test_eviction_deletes_oldest_first_across_logs_and_keeps_what_fits():
    cands = [
        Candidate("node.b", closed_at=20, seq=0, size=5),
        Candidate("keeper.a", closed_at=10, seq=7, size=5),
        Candidate("node.c", closed_at=30, seq=1, size=5),
    ]
    plan = plan_eviction(cands, used=15, incoming=5, cap=15, now=40, max_age=1e9)
    assert plan.delete == ("keeper.a",) and plan.fits


def test_busy_file_is_never_deleted_and_guards_newer_ones():
    cands = [
        Candidate("old", closed_at=1, seq=0, size=4, busy=True),
        Candidate("new", closed_at=2, seq=1, size=4),
    ]
    plan = plan_eviction(cands, used=8, incoming=4, cap=10, now=3, max_age=1e9)
    assert plan.delete == () and not plan.fits and plan.cancel == "old"


def test_nothing_to_delete_and_no_room():
    plan = plan_eviction([], used=10, incoming=1, cap=10, now=0, max_age=1)
    assert plan.delete == () and not plan.fits and plan.cancel is None


def test_pick_to_compress_takes_the_newest():
    assert pick_to_compress([]) is None
    cands = [Candidate(f"f{i}", closed_at=t, seq=i, size=1) for i, t in enumerate([5, 9, 9, 1])]
    assert pick_to_compress(cands).name == "f2"
