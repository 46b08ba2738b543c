"""Who owns the node's lifetime under the launcher (decision 063), with real processes:
a keeper killed outright leaves the node running and the next keeper takes it over; a
launcher stopped as a service stops its node gracefully; a launcher killed outright has
its node stopped gracefully by the node shim. Nothing is left running in any case."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable

import psutil
import pytest

from nodekeeper.launcher.decide import State
from tests.selfupdate.conftest import LauncherProcess, Site, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

Start = Callable[..., LauncherProcess]


def events(site: Site) -> list[str]:
    return site.events.read_text().splitlines() if site.events.exists() else []


def shims_of(site: Site) -> list[psutil.Process]:
    """Node shims started for this site (their node's argv names its events file)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if any("nodekeeper.nodeshim" in part for part in cmdline):
            try:
                children = proc.children()
                if any(str(site.events) in " ".join(c.cmdline()) for c in children):
                    found.append(proc)
            except psutil.Error:
                continue
    return found


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def running_node(site: Site, launcher: LauncherProcess) -> int:
    launcher.wait_running("1.0.0")
    [pid] = wait_for(site.node_starts, 10, "the node")
    wait_for(lambda: shims_of(site), 10, "the node's shim")
    return pid


def test_a_keeper_killed_outright_leaves_the_node_to_the_next_keeper(
    site: Site, launchers: Start
) -> None:
    site.release("good", "1.0.0")
    site.set_state(State(current="1.0.0"))
    launcher = launchers(site)
    node = running_node(site, launcher)
    keeper = launcher.keeper()
    assert keeper is not None
    keeper.send_signal(signal.SIGKILL)
    keeper.wait(10)
    keeper_log = site.data_dir / "logs" / "keeper.log"
    wait_for(
        lambda: f"took over the running node: pid {node}" in keeper_log.read_text(),
        30,
        lambda: f"the next keeper taking the node over\n{launcher.log}",
    )
    assert site.node_starts() == [node] and alive(node)
    assert not [e for e in events(site) if e.startswith("stop ")]


def test_a_service_stop_stops_the_node_gracefully_and_leaves_nothing(
    site: Site, launchers: Start
) -> None:
    site.release("good", "1.0.0")
    site.set_state(State(current="1.0.0"))
    launcher = launchers(site)
    node = running_node(site, launcher)
    shims = shims_of(site)
    assert launcher.stop() == 0
    assert not alive(node)
    assert [e.split()[:3] for e in events(site) if e.startswith("stop ")] == [
        ["stop", str(node), "sigterm"]
    ]
    psutil.wait_procs(shims, timeout=10)
    assert not shims_of(site) and not any(s.is_running() for s in shims)


def test_a_launcher_killed_outright_has_its_node_stopped_by_the_shim(
    site: Site, launchers: Start
) -> None:
    site.release("good", "1.0.0")
    site.set_state(State(current="1.0.0"))
    launcher = launchers(site)
    node = running_node(site, launcher)
    shims = shims_of(site)
    os.kill(launcher.proc.pid, signal.SIGKILL)
    launcher.proc.wait(10)
    wait_for(lambda: not alive(node), 20, "the node stopped by its shim")
    assert [e.split()[:3] for e in events(site) if e.startswith("stop ")] == [
        ["stop", str(node), "sigterm"]
    ]
    psutil.wait_procs(shims, timeout=10)
    assert not any(s.is_running() for s in shims)


@pytest.mark.parametrize("kind", ["exit_at_start", "silent"])
def test_a_keeper_release_that_fails_probation_falls_back_without_touching_the_node(
    site: Site, launchers: Start, kind: str
) -> None:
    """exit_at_start never reaches the node; silent takes it over, never answers its
    status API, and is stopped by the launcher as a hand-back: it leaves the node to the
    keeper the launcher falls back to."""
    site.release("good", "1.0.0")
    bad = site.release(kind, "1.1.0")
    site.set_state(State(current="1.0.0"))
    launcher = launchers(site)
    node = running_node(site, launcher)
    assert launcher.hand_over(bad, "1.1.0") == {"ok": True}
    wait_for(lambda: "1.1.0" in site.state().failed, 30, lambda: f"the fallback\n{launcher.log}")
    keeper_log = site.data_dir / "logs" / "keeper.log"
    taken_over = f"took over the running node: pid {node}"
    times = 1 if kind == "exit_at_start" else 2  # by the silent keeper, then by 1.0.0
    wait_for(
        lambda: keeper_log.read_text().count(taken_over) == times,
        30,
        lambda: f"keeper 1.0.0 taking the node over again\n{launcher.log}",
    )
    launcher.wait_running("1.0.0")
    assert site.node_starts() == [node] and alive(node)
    assert not [e for e in events(site) if e.startswith("stop ")]


@pytest.mark.parametrize("how", ["keeper killed", "service stopped"])
def test_mid_hand_over(site: Site, launchers: Start, how: str) -> None:
    """Right after the keeper asked to hand over: a keeper killed outright leaves the node
    to whichever keeper runs next; a service stop stops the node gracefully, whoever holds
    it at that instant (a keeper, or only its shim), and leaves nothing running."""
    site.release("good", "1.0.0")
    new = site.release("good", "1.1.0")
    site.set_state(State(current="1.0.0"))
    launcher = launchers(site)
    node = running_node(site, launcher)
    shims = shims_of(site)
    keeper = launcher.keeper()
    assert keeper is not None
    assert launcher.hand_over(new, "1.1.0") == {"ok": True}
    if how == "keeper killed":
        with_suppressed_exit(keeper)
        keeper_log = site.data_dir / "logs" / "keeper.log"
        wait_for(
            lambda: f"took over the running node: pid {node}" in keeper_log.read_text(),
            30,
            lambda: f"the next keeper taking the node over\n{launcher.log}",
        )
        assert site.node_starts() == [node] and alive(node)
        return
    assert launcher.stop() == 0
    wait_for(lambda: not alive(node), 20, "the node stopped")
    assert [e.split()[:3] for e in events(site) if e.startswith("stop ")] == [
        ["stop", str(node), "sigterm"]
    ]
    psutil.wait_procs(shims, timeout=10)
    assert not any(s.is_running() for s in shims)


def with_suppressed_exit(keeper: psutil.Process) -> None:
    """SIGKILL, tolerating a keeper that already exited for the hand-over."""
    with contextlib.suppress(psutil.NoSuchProcess):
        keeper.send_signal(signal.SIGKILL)
