"""kill -9 of a process in the middle of queueing leaves a queue the next keeper reads:
every acknowledged report is there or counted as dropped, nothing half-written remains."""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nodekeeper.keeper.reports.queue import QueueLimits, ReportQueue

PROGRAM = Path(__file__).parent / "programs" / "queue_writer.py"
ROOT = Path(__file__).parents[2]

pytestmark = pytest.mark.timeout(120)


def kill_after(directory: Path, max_count: int, acks: int, delay: float) -> int:
    """Run the writer, SIGKILL it ``delay`` s after its ``acks``-th acknowledged put
    (somewhere in a later put: one takes a few ms, mostly fsync); returns the number of
    puts it acknowledged before it died (the one in progress is not among them)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        [sys.executable, str(PROGRAM), str(directory), str(max_count)],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    assert proc.stdout is not None
    last = -1
    try:
        for line in proc.stdout:
            last = int(line)
            if last + 1 >= acks:
                time.sleep(delay)
                break
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    # What it printed before it died (in the pipe still) was acknowledged too.
    for line in proc.stdout.read().split():
        last = int(line)
    proc.stdout.close()
    assert last + 1 >= acks, "the writer died on its own"
    return last + 1


@pytest.mark.parametrize(
    "max_count",
    [pytest.param(10_000, marks=pytest.mark.e2e), 7],  # 10 000: 9 s; 7: 3 s
)
def test_kill_9_while_queueing(tmp_path: Path, max_count: int) -> None:
    rng = random.Random(max_count)
    directory = tmp_path / "reports"
    acked_per_run: list[int] = []
    leftovers = 0  # kills that caught a write between create and rename
    # At least six kills, and on until one of them caught a write half-done (about
    # half of them do; 40 without one would mean the test no longer tests that).
    while len(acked_per_run) < 6 or not leftovers:
        assert len(acked_per_run) < 40, "no kill ever caught a write in progress"
        acked_per_run.append(
            kill_after(directory, max_count, rng.randint(1, 40), rng.uniform(0, 0.004))
        )
        leftovers += any(p.name.endswith(".tmp") for p in directory.rglob("*"))
        queue = ReportQueue(directory, QueueLimits(max_count=max_count, max_bytes=1 << 20))
        assert not [p for p in directory.rglob("*") if p.name.endswith(".tmp")]
        records = [queue.read(e) for e in queue.entries()]  # all whole and readable
        seqs = [e.seq for e in queue.entries()]
        assert seqs == sorted(seqs) and len(records) <= max_count
        # Each acknowledged report is queued or counted as dropped. Per run, one more
        # may have been written after the last acknowledgement, and a kill between
        # writing a report and the drop counter may count one drop twice.
        total, done = sum(acked_per_run), len(acked_per_run)
        accounted = len(records) + queue.dropped
        assert total <= accounted <= total + 2 * done, (total, accounted)
        if max_count > 1000:
            # No drops: each run's reports are all there, in order: 0, 1, ..., its last.
            assert queue.dropped == 0
            numbers = [r["report"]["details"]["n"] for r in records]
            starts = [i for i, n in enumerate(numbers) if n == 0] + [len(numbers)]
            assert len(starts) - 1 == done
            for run, (a, b) in enumerate(itertools.pairwise(starts)):
                assert numbers[a:b] == list(range(b - a))
                assert acked_per_run[run] <= b - a <= acked_per_run[run] + 1
