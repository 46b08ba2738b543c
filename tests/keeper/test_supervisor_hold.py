"""Supervisor.hold/release against real child processes (decision 070): the node is
stopped on purpose and nothing starts until the release; a switch during a hold neither
hangs nor starts the node."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.keeper.conftest import PY, Running, fast_config, free_port, gone, program, wait_until

pytestmark = pytest.mark.timeout(60)


def test_hold_stops_the_node_and_release_starts_it_again(tmp_path: Path) -> None:
    config = fast_config(tmp_path, program("pulse_node.py", free_port()))

    async def scenario() -> None:
        async with Running(config) as run:
            await run.wait_state("running")
            first = run.pid
            assert first is not None and run.sup.snapshot()["hold"] is None
            run.sup.hold("the storage directory is gone", "plug the disk back in")
            await wait_until(lambda: run.pid is None and gone(first), 5, "the node stopped")
            await run.wait_state("stopped")
            hold = run.sup.snapshot()["hold"]
            assert hold["reason"] == "the storage directory is gone"
            assert hold["fix"] == "plug the disk back in"
            assert isinstance(hold["since"], float)
            assert run.sup.observe().held is True
            last = run.sup.snapshot()["last_exit"]
            assert last["reason"] == "held"
            # A second hold only changes the words: same since, no new stop.
            run.sup.hold("still gone", "plug it in")
            assert run.sup.snapshot()["hold"]["since"] == hold["since"]

            run.sup.release()
            second = await run.wait_new_pid(first)
            await run.wait_state("running")
            assert second != first
            assert run.sup.snapshot()["hold"] is None
            # Exactly two starts: none happened while held.
            assert run.sup.observe().spawns == 2
            # A hold is not a crash: nothing in the error index, no restart counted.
            assert run.errors.records == []
            assert run.sup.snapshot()["restarts"] == 0

    asyncio.run(scenario())


def test_switch_during_a_hold_returns_at_once_and_the_new_command_runs_at_release(
    tmp_path: Path,
) -> None:
    events = tmp_path / "events"
    config = fast_config(tmp_path, program("pulse_node.py", free_port()))
    new_argv = program("pulse_node.py", free_port(), "--events", events)

    async def scenario() -> None:
        async with Running(config) as run:
            await run.wait_state("running")
            first = run.pid
            run.sup.hold("held for the test", "release it")
            await wait_until(lambda: run.pid is None, 5, "the node stopped")
            generation = await asyncio.wait_for(run.sup.switch(new_argv), 5)
            # Returned without starting anything: no new run, no pid.
            assert run.pid is None
            assert run.sup.observe().generation < generation
            assert run.sup.observe().spawns == 1
            run.sup.release()
            await run.wait_new_pid(first)
            await run.wait_state("running")
            assert run.sup.observe().generation == generation
            # The line, not the file: the program creates the file before it writes to it.
            await wait_until(
                lambda: events.exists() and events.read_text().endswith("\n"),
                5,
                "the new command's start line",
            )
            assert events.read_text().startswith(f"start {run.pid} ")

    asyncio.run(scenario())


def test_a_switch_waiting_for_its_start_returns_when_a_hold_begins(tmp_path: Path) -> None:
    # The old node ignores SIGTERM (killed after the 1 s stop timeout), so the switch is
    # still waiting for its new run when the hold comes: it must return, not wait for a
    # release.
    pids = tmp_path / "pids"
    config = fast_config(tmp_path, program("stubborn_tree.py", pids))

    async def scenario() -> None:
        async with Running(config) as run:
            await run.wait_state("running")
            # Each process writes its pid once it ignores SIGTERM.
            await wait_until(
                lambda: pids.exists() and len(pids.read_text().split()) == 3, 10, "the tree"
            )
            switching = asyncio.create_task(run.sup.switch(program("pulse_node.py", free_port())))
            await run.wait_state("stopping")
            run.sup.hold("held mid-switch", "release it")
            await asyncio.wait_for(switching, 5)
            await wait_until(lambda: run.pid is None, 5, "the old node gone")
            assert run.sup.observe().spawns == 1
            run.sup.release()
            await run.wait_state("running")
            assert run.sup.observe().spawns == 2

    asyncio.run(scenario())


def test_a_hold_during_the_crash_backoff_keeps_the_node_down_until_release(
    tmp_path: Path,
) -> None:
    config = fast_config(
        tmp_path,
        [PY, "-c", "import sys; sys.exit(3)"],
        restart={"backoff_initial_seconds": 30.0, "backoff_max_seconds": 30.0},
    )

    async def scenario() -> None:
        async with Running(config) as run:
            await wait_until(lambda: run.sup.observe().exits == 1, 5, "the first crash")
            assert run.sup.snapshot()["next_start_in"] > 20  # waiting out the backoff
            run.sup.hold("held in the backoff", "release it")
            run.sup.release()
            # The release cuts the 30 s backoff short: the second start comes at once.
            await wait_until(lambda: run.sup.observe().spawns == 2, 5, "the restart")

    asyncio.run(scenario())


def test_a_shutdown_during_a_hold_ends_run(tmp_path: Path) -> None:
    config = fast_config(tmp_path, program("pulse_node.py", free_port()))

    async def scenario() -> None:
        run = Running(config)
        async with run:
            await run.wait_state("running")
            run.sup.hold("held", "release it")
            await wait_until(lambda: run.pid is None, 5, "the node stopped")
        # __aexit__ asked for the shutdown and run() returned within its deadline.
        assert run.task is not None and run.task.done()
        assert run.state == "stopped"

    asyncio.run(scenario())
