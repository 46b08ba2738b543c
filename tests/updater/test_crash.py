"""SIGKILL the keeper at every step boundary of an update and at random instants during
download and unpack; every run must end with the node running a verified version within
one cycle, nothing partial executed, and no acknowledged piece lost.

The keeper kills itself at the named point (``NODEKEEPER_TEST_CRASH_AT``, see
``machine.CrashHook``): ``STEP`` is right after STEP is journaled, before its side
effects; ``STEP!`` right before it is journaled, after the previous step's effects;
``STEP+S`` S seconds into the step. The node dies with the keeper (PR_SET_PDEATHSIG), as
in a power cut. One lab serves every round: each round releases the next version.

``NODEKEEPER_CRASH_RANDOM=N`` runs N random instants instead of the default 4,
``NODEKEEPER_CRASH_ALL=1`` adds the "before" side of every boundary, and
``NODEKEEPER_CRASH_SEED=S`` replays the instants of a failed run (its message shows S).
"""

from __future__ import annotations

import os
import random

import pytest

from .lab import Lab

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

AFTER_JOURNAL = ["download", "verify", "unpack", "preflight", "switch", "probation", "commit"]
BEFORE_JOURNAL = ["verify!", "unpack!", "preflight!", "switch!", "probation!", "commit!"]
DEFAULT_BEFORE = ["switch!", "probation!", "commit!"]
PADDING = 6 * 1024 * 1024  # enough for a download and an unpack of a few tens of ms


def crash_points(seed: int) -> list[str]:
    before = BEFORE_JOURNAL if os.environ.get("NODEKEEPER_CRASH_ALL") else DEFAULT_BEFORE
    count = int(os.environ.get("NODEKEEPER_CRASH_RANDOM", "4"))
    rng = random.Random(seed)
    randoms = [
        f"{rng.choice(['download', 'unpack'])}+{rng.uniform(0.0, 0.04):.4f}" for _ in range(count)
    ]
    return [*AFTER_JOURNAL, *before, *randoms]


def crash_round(lab: Lab, version: str, point: str, piece: int) -> None:
    zip_path = lab.release(version, padding=PADDING)
    keeper = lab.start_keeper(env={"NODEKEEPER_TEST_CRASH_AT": point})
    code = keeper.proc.wait(60)
    if code != -9:
        # A random instant that fell after the update finished: the keeper is healthy.
        assert "+" in point, f"keeper exited {code} at {point}: {lab.log_tail()}"
        keeper.stop()
    # The node died with the keeper (PDEATHSIG): nothing serves until the restart.
    lab.wait(lambda: lab.pulse() is None, 10, "the node to die with the keeper")
    keeper = lab.start_keeper()
    lab.wait_running(version, timeout=30)
    lab.check_running_is_verified(version, zip_path)
    lab.check_pieces()
    lab.put_piece(f"after-{piece}", os.urandom(2000))
    leftovers = [p.name for p in (lab.data_dir / "versions" / "storagenode").iterdir()]
    assert all(".tmp-" not in name for name in leftovers), leftovers
    keeper.stop()


def test_crash_at_every_step_and_random_instants(lab: Lab) -> None:
    lab.config()
    # A first install interrupted in its download: nothing was running, nothing runs
    # until the restart installs it.
    first = lab.publish("1.0.0", padding=PADDING)
    keeper = lab.start_keeper(env={"NODEKEEPER_TEST_CRASH_AT": "download+0.01"})
    keeper.proc.wait(60)
    keeper = lab.start_keeper()
    lab.wait_running("1.0.0")
    lab.check_running_is_verified("1.0.0", first)
    for i in range(3):
        lab.put_piece(f"before-{i}", os.urandom(5000))
    keeper.stop()
    # NODEKEEPER_CRASH_SEED=N replays a failed run's random instants.
    seed = int(os.environ.get("NODEKEEPER_CRASH_SEED") or random.randrange(1 << 30))
    for n, point in enumerate(crash_points(seed), start=1):
        try:
            crash_round(lab, f"1.0.{n}", point, n)
        except AssertionError as exc:
            raise AssertionError(f"round {n}, crash at {point} (seed {seed}): {exc}") from None
    journal = lab.journal()
    assert journal is not None and journal["failed"] == []
    # Only current and previous are kept; no download is left once committed.
    assert sorted(p.name for p in (lab.data_dir / "versions" / "storagenode").iterdir()) == [
        journal["previous"],
        journal["current"],
    ]
    assert list((lab.data_dir / "downloads").iterdir()) == []
    assert "rolled_back" not in lab.report_kinds()
