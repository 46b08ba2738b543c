"""A gigabyte of lines into a 50 MB cap, watched from outside while it happens.

The gigabyte is end-to-end (CI runs it); the inner loop floods a tenth of it into a tenth
of the cap, which exercises the same rotation, compression and eviction."""

from __future__ import annotations

import os
import threading
import time

import pytest

from nodekeeper.logs import LogSettings, RotatingFile

from .helpers import all_lines, archives, snapshot

LINES_PER_WRITE = 500
PAD = b"storagenode piecestore upload started " + b"x" * 44  # ~96-byte lines


@pytest.mark.parametrize(
    ("flood", "cap", "file"),
    [
        pytest.param(1_000_000_000, 50_000_000, 5_000_000, id="1GB", marks=pytest.mark.e2e),
        pytest.param(100_000_000, 5_000_000, 500_000, id="100MB"),
    ],
)
def test_flood_never_exceeds_the_cap(tmp_path, flood: int, cap: int, file: int):
    CAP, FILE, FLOOD = cap, file, flood  # the constants of this flood
    settings = LogSettings(max_file_size=FILE, total_cap=CAP)
    log = RotatingFile(tmp_path, "storagenode", ".log", settings)
    active = {"storagenode.log"}
    done = threading.Event()
    samples = []
    worst = []
    waiting = []  # rotated files not compressed yet, per sample

    def watch():
        while not done.is_set():
            snap = snapshot(tmp_path, active)
            # Rotated files not gzipped yet: plain archives (name ends in digits.log).
            waiting.append(sum(1 for n in os.listdir(tmp_path) if n[-5:-4].isdigit()))
            if snap is not None:
                samples.append(snap)
                # The cap covers everything but the active file, which rotates before
                # a write would take it past its limit.
                if snap.archived > CAP or snap.active > FILE:
                    worst.append(snap)
            time.sleep(0.002)

    watcher = threading.Thread(target=watch)
    watcher.start()
    started = time.monotonic()
    written = n = 0
    try:
        # Whole lines, many per call: the Python loop would otherwise be the bottleneck
        # and the flood would take minutes instead of seconds. The cap, rotation and
        # compression see the same bytes either way.
        while written < FLOOD:
            block = b"".join([b"%012d %s\n" % (i, PAD) for i in range(n, n + LINES_PER_WRITE)])
            log.write(block)
            n += LINES_PER_WRITE
            written += len(block)
    finally:
        done.set()
        watcher.join()
    flood_seconds = time.monotonic() - started
    assert log.directory.wait_idle()
    # The directory's own accounting matches the disk (it decides without listing it).
    assert log.directory.usage() == snapshot(tmp_path, active).archived
    log.close(timeout=None)

    print(
        f"flood: {written / 1e9:.2f} GB, {n} lines in {flood_seconds:.1f} s, "
        f"{len(samples)} samples, up to {max(waiting)} files waiting for gzip"
    )
    assert not worst, f"over the cap: {worst[:5]}"
    assert len(samples) >= 20, "the watcher hardly saw the flood"
    assert max(s.archived for s in samples) > CAP // 2, "the flood never came near the cap"
    # Writing outran gzip (several 5 MB files waited at once): the cap held regardless.
    assert max(waiting) >= 2

    final = snapshot(tmp_path, active)
    assert final is not None and final.archived <= CAP
    kept = archives(tmp_path, "storagenode")
    assert len(kept) >= 5
    assert all(p.name.endswith(".gz") for p in kept), [p.name for p in kept]
    assert not list(tmp_path.glob("*.tmp"))

    numbers = [int(line.split(b" ", 1)[0]) for line in all_lines(tmp_path, "storagenode")]
    # The newest lines, in order, without a gap, up to the very last one written.
    assert numbers == list(range(numbers[0], n))
    assert len(numbers) * (len(PAD) + 14) > 2 * FILE
