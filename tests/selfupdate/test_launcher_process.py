"""The launcher as a real process over real keeper releases: hand-over and commit, fallback
from a keeper that exits at start or never answers, unusable installs, crash restarts,
SIGTERM, and kill -9 of the launcher in the middle of an update."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import psutil
import pytest

from nodekeeper.launcher import statefile
from nodekeeper.launcher.decide import Pending, State
from nodekeeper.launcher.protocol import DELIVERED_FILE
from nodekeeper.logs.error_index import read_errors_since
from tests.selfupdate.conftest import PROBATION, LauncherProcess, Site, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
Start = Callable[..., LauncherProcess]


def queued_reports(site: Site) -> list[dict]:
    queue = site.data_dir / "state" / "reports" / "queue"
    return [json.loads(p.read_text())["report"] for p in sorted(queue.glob("*.json"))]


def test_good_version_is_committed_and_the_node_comes_back(site: Site, launchers: Start) -> None:
    site.release("good", "1.0.0")
    new = site.release("good", "1.1.0")
    site.set_state(State(current="1.0.0"))
    launcher = launchers(site)
    old = launcher.wait_running("1.0.0")
    nodes_before = wait_for(site.node_starts, 10, "the node")

    assert launcher.hand_over(new, "1.1.0") == {"ok": True}
    old.wait(15)
    launcher.wait_running("1.1.0")
    state = wait_for(
        lambda: site.state().current == "1.1.0" and site.state(), 3 * PROBATION, "the commit"
    )
    assert (state.current, state.previous, state.pending, state.failed) == (
        "1.1.0",
        "1.0.0",
        None,
        (),
    )
    assert [(o.kind, o.version) for o in state.outcomes] == [("committed", "1.1.0")]
    # The old keeper left the node to its shim and the new one took it over: the node
    # was never restarted (decision 063).
    keeper_log = site.data_dir / "logs" / "keeper.log"
    wait_for(lambda: "took over the running node" in keeper_log.read_text(), 10, "the take-over")
    assert site.node_starts() == nodes_before
    wait_for(lambda: "keeper 1.1.0 passed probation: committed" in launcher.log, 5, "the log")

    # The commit is reported by the next keeper start, as update_succeeded.
    launcher.stop()
    launchers(site).wait_running("1.1.0")
    wait_for(lambda: (site.state_dir / DELIVERED_FILE).exists(), 10, "delivery")
    reports = queued_reports(site)
    assert [(r["kind"], r["target_version"]) for r in reports] == [("update_succeeded", "1.1.0")]


@pytest.mark.parametrize(("kind", "reason"), [("exit_at_start", "exited"), ("silent", "no_status")])
def test_bad_version_falls_back_is_marked_failed_and_reported(
    site: Site, launchers: Start, kind: str, reason: str
) -> None:
    site.release("good", "1.0.0")
    bad = site.release(kind, "1.1.0")
    site.set_state(State(current="1.0.0"))
    launcher = launchers(site)
    old = launcher.wait_running("1.0.0")
    since = time.time()

    assert launcher.hand_over(bad, "1.1.0") == {"ok": True}
    old.wait(15)
    # Back on 1.0.0, at the latest after the probation (plus the stop of a silent one).
    wait_for(
        lambda: site.state().failed, 3 * PROBATION + 15, lambda: f"the fallback\n{launcher.log}"
    )
    assert launcher.wait_running("1.0.0").pid != old.pid
    state = site.state()
    assert (state.current, state.pending, state.failed) == ("1.0.0", None, ("1.1.0",))
    (outcome,) = state.outcomes
    assert (outcome.kind, outcome.version, outcome.running, outcome.reason) == (
        "rolled_back",
        "1.1.0",
        "1.0.0",
        reason,
    )

    # The keeper that came back turned the record into a report and an error-index entry.
    wait_for(lambda: (site.state_dir / DELIVERED_FILE).exists(), 10, "delivery")
    (report,) = queued_reports(site)
    assert (report["kind"], report["process"], report["version"], report["target_version"]) == (
        "rolled_back",
        "nodekeeper",
        "1.0.0",
        "1.1.0",
    )
    entries = [
        e
        for e in read_errors_since(site.data_dir / "logs", since)
        if e.get("target_version") == "1.1.0"
    ]
    assert len(entries) == 1 and entries[0]["reason"] == reason

    # Not tried again: the keeper refuses before it stops anything.
    answer = launcher.hand_over(bad, "1.1.0")
    assert answer["ok"] is False and "failed before" in answer["error"]
    assert launcher.keeper_version() == "1.0.0" and site.status_up()


def test_release_without_manifest_or_with_a_wrong_version_never_leaves_no_keeper(
    site: Site, launchers: Start
) -> None:
    site.release("good", "1.0.0")
    # Pending versions the launcher cannot start: no manifest at all, and a manifest that
    # names another version. A launcher that boots with one pending starts it first.
    (site.versions_dir / "1.1.0").mkdir(parents=True)
    (site.versions_dir / "1.1.0" / "nodekeeper").mkdir()
    wrong = site.release("good", "1.2.0")
    wrong.rename(site.versions_dir / "1.3.0")
    for version in ("1.1.0", "1.3.0"):
        site.set_state(State(current="1.0.0", pending=Pending(version, 0)))
        launcher = launchers(site)
        launcher.wait_running("1.0.0")
        state = site.state()
        assert (state.current, state.pending, state.failed) == ("1.0.0", None, (version,))
        assert state.outcomes[-1].reason == "unusable"
        assert launcher.stop() == 0


def test_broken_current_falls_to_previous_then_to_the_runtime_keeper(
    site: Site, launchers: Start
) -> None:
    site.release("good", "1.0.0")
    site.set_state(State(current="2.0.0", previous="1.0.0"))  # 2.0.0's install is gone
    launcher = launchers(site)
    launcher.wait_running("1.0.0")
    # The launcher records the demotion just after it starts the keeper that took over:
    # on a loaded machine that keeper can answer first, so wait for the record.
    state = wait_for(lambda: (st := site.state()).current == "1.0.0" and st, 30, "a demotion")
    assert (state.current, state.previous) == ("1.0.0", None)
    assert [(o.reason, o.version, o.running) for o in state.outcomes] == [
        ("unusable", "2.0.0", "1.0.0")
    ]
    assert launcher.stop() == 0

    site.set_state(State(current="2.0.0", previous="1.5.0"))  # neither is installed
    launcher = launchers(site)
    launcher.wait_running("runtime")
    state = wait_for(lambda: (st := site.state()).current is None and st, 30, "a demotion")
    assert (state.current, state.previous) == (None, None)


def test_a_killed_keeper_is_started_again(site: Site, launchers: Start) -> None:
    site.release("good", "1.0.0")
    site.set_state(State(current="1.0.0"))
    launcher = launchers(site)
    first = launcher.wait_running("1.0.0")
    first.kill()
    second = wait_for(
        lambda: (k := launcher.keeper()) and k.pid != first.pid and k, 15, "a new keeper"
    )
    launcher.wait_running("1.0.0")
    assert second.pid != first.pid
    assert site.state().current == "1.0.0" and site.state().failed == ()
    assert "keeper exited with code -9" in launcher.log


def test_sigterm_stops_keeper_and_node_and_exits_0(site: Site, launchers: Start) -> None:
    site.release("good", "1.0.0")
    site.set_state(State(current="1.0.0"))
    launcher = launchers(site)
    keeper = launcher.wait_running("1.0.0")
    node = wait_for(lambda: keeper.children(), 10, "the node")[0]
    assert launcher.stop() == 0
    assert not keeper.is_running() and not node.is_running()
    assert site.state().current == "1.0.0"


def test_launcher_killed_with_9_takes_its_keeper_along(site: Site, launchers: Start) -> None:
    site.release("good", "1.0.0")
    site.set_state(State(current="1.0.0"))
    launcher = launchers(site)
    keeper = launcher.wait_running("1.0.0")
    node = wait_for(lambda: keeper.children(), 10, "the node")[0]
    launcher.kill()
    # PR_SET_PDEATHSIG: the keeper dies with the launcher, and the node with the keeper.
    psutil.wait_procs([keeper, node], timeout=10)
    assert not keeper.is_running() and not node.is_running()


def answering(launcher: LauncherProcess) -> str | None:
    """The version of the launcher's keeper once its status API answers."""
    return launcher.keeper_version() if launcher.site.status_up() else None


def test_state_survives_kill_9_of_the_launcher_during_updates(site: Site, launchers: Start) -> None:
    """Kill -9 the launcher at random instants of a hand-over and probation; each time the
    state file must parse, and a new launcher must end up running a keeper with a state
    that makes sense (committed, or pending being retried, or fallen back)."""
    installs = {v: site.release("good", v) for v in ("1.0.0", "1.1.0", "1.2.0", "1.3.0")}
    site.set_state(State(current="1.0.0"))
    rng = random.Random(6)
    launcher = launchers(site, probation=2.0)
    for target in ("1.1.0", "1.2.0", "1.3.0"):
        running = wait_for(partial(answering, launcher), 30, f"a keeper\n{launcher.log}")
        if running == target or site.state().current == target:
            continue
        assert launcher.hand_over(installs[target], target)["ok"] is True
        time.sleep(rng.uniform(0.0, 3.0))
        launcher.kill()
        state = site.state()  # must parse: every write was temp + fsync + replace
        assert state.current in installs and (
            state.pending is None or state.pending.version == target
        )
        launcher = launchers(site, probation=2.0)
    wait_for(partial(answering, launcher), 30, "a keeper at the end")
    # A keeper in probation answers too, and on a loaded machine may fail it and fall
    # back: the end is when nothing is pending and the keeper answering is the current.
    state = wait_for(lambda: site.state().pending is None and site.state(), 30, "no pending")
    final = wait_for(
        lambda: answering(launcher) == state.current and state.current,
        30,
        f"keeper {state.current} answering\n{launcher.log}",
    )
    assert final == state.current and site.state() == state
    assert not any(p.name.endswith(".tmp") for p in site.state_dir.iterdir())


def test_state_file_writes_are_whole_under_kill_9(tmp_path: Path) -> None:
    """A writer that saves states as fast as it can, killed -9 at random instants: the
    file is always one complete state, never a torn one."""
    script = tmp_path / "writer.py"
    script.write_text(
        "import sys\n"
        "from pathlib import Path\n"
        "from nodekeeper.launcher import statefile\n"
        "from nodekeeper.launcher.decide import State\n"
        "d = Path(sys.argv[1])\n"
        "i = 0\n"
        "while True:\n"
        "    i += 1\n"
        "    statefile.save_state(d, State(current=f'1.0.{i}', previous='x' * (i % 5000)))\n"
        "    if i == 1:\n"
        "        print('saved', flush=True)\n"
    )
    import subprocess
    import sys

    rng = random.Random(7)
    seen = set()
    for _ in range(12):
        proc = subprocess.Popen(
            [sys.executable, str(script), str(tmp_path)], stdout=subprocess.PIPE, text=True
        )
        # The kill lands while states are being written, not while Python is still
        # starting (a loaded machine can take longer than the random delay to start it).
        assert proc.stdout is not None and proc.stdout.readline() == "saved\n"
        time.sleep(rng.uniform(0.0, 0.35))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        state = statefile.load_state(tmp_path)
        assert state.current is not None and state.current.startswith("1.0.")
        assert state.previous == "x" * (int(state.current.rsplit(".", 1)[1]) % 5000)
        seen.add(state.current)
        statefile.remove_temp_files(tmp_path)
    assert len(seen) > 1
