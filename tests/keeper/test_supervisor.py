"""The supervisor against real child processes: crashes, hangs, stops, memory, setup."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from nodekeeper.keeper import loopback
from nodekeeper.keeper.api import serve_status
from nodekeeper.platform.base import MECH_CGROUP_MEMORY, MECH_RLIMIT_AS
from tests.keeper.conftest import PY, Running, fast_config, free_port, gone, program, wait_until

pytestmark = pytest.mark.timeout(60)


def test_kill_9_restarts_with_growing_backoff_that_resets_after_a_healthy_stretch(
    tmp_path: Path,
) -> None:
    port = free_port()
    config = fast_config(
        tmp_path,
        program("pulse_node.py", port),
        probe={"kind": "http", "url": f"http://127.0.0.1:{port}/pulse"},
    )

    async def scenario() -> None:
        async with Running(config) as run:
            await run.wait_state("running")
            gaps = []
            for _ in range(3):
                old = run.pid
                os.kill(old, signal.SIGKILL)
                killed_at = time.time()
                await run.wait_new_pid(old)
                gaps.append(run.sup.status.started_at - killed_at)
                await run.wait_state("running")
            # 0.2, 0.4, 0.8 s: each crash doubles the delay (plus reaction time and the
            # spawn itself, which can take a while on a loaded two-core machine).
            for gap, expected in zip(gaps, (0.2, 0.4, 0.8), strict=True):
                assert expected <= gap < expected + 0.35, gaps
            assert run.sup.status.restarts == 3
            last = run.sup.status.last_exit
            assert last is not None and last.reason == "crash" and last.code == -signal.SIGKILL
            assert "killed by SIGKILL" in last.detail
            # The third crash inside the window raises the crash-loop flag (never gives up).
            assert run.sup.status.crash_loop
            assert "crash-loop" in run.errors.reasons()

            # Healthy for longer than backoff_reset_after_seconds (1.5 s): back to 0.2 s.
            await asyncio.sleep(1.7)
            old = run.pid
            os.kill(old, signal.SIGKILL)
            killed_at = time.time()
            await run.wait_new_pid(old)
            # (Without the reset this delay would be 1.6 s.)
            assert 0.2 <= run.sup.status.started_at - killed_at < 0.55
            # Node output went through the sink, stdout and stderr kept apart.
            assert ("stdout", f"listening on {port}") in run.sink.lines
            assert ("stderr", "an error line for stderr") in run.sink.lines

    asyncio.run(scenario())


def test_sigstop_hang_is_detected_within_period_times_threshold_plus_timeout(
    tmp_path: Path,
) -> None:
    port = free_port()
    config = fast_config(
        tmp_path,
        program("pulse_node.py", port),
        probe={"kind": "http", "url": f"http://127.0.0.1:{port}/pulse"},
        stop={"timeout_seconds": 0.5},
    )

    async def scenario() -> None:
        async with Running(config) as run:
            await run.wait_state("running")
            old = run.pid
            assert old is not None
            os.kill(old, signal.SIGSTOP)
            took = await run.wait_state("hung", timeout=5)
            # interval 0.2 × threshold 3 + timeout 0.3, plus scheduling slack.
            assert took <= 0.2 * 3 + 0.3 + 0.5, took
            await run.wait_new_pid(old)
            await run.wait_state("running")
            assert gone(old)
            last = run.sup.status.last_exit
            assert last is not None and last.reason == "hung" and last.code == -signal.SIGKILL
            assert "hung" in run.errors.reasons()

    asyncio.run(scenario())


def test_dead_endpoint_on_a_live_process_is_a_hang(tmp_path: Path) -> None:
    port = free_port()
    config = fast_config(
        tmp_path,
        program("hanger.py", port, 0.6),
        probe={"kind": "http", "url": f"http://127.0.0.1:{port}/pulse"},
    )

    async def scenario() -> None:
        async with Running(config) as run:
            await run.wait_state("running")
            old = run.pid
            # The hung state lasts only until SIGTERM ends the process; look at the exit.
            await wait_until(lambda: run.sup.status.last_exit is not None, 5, "an exit")
            exit_ = run.sup.status.last_exit
            assert exit_ is not None and exit_.reason == "hung"
            assert exit_.code == -signal.SIGTERM  # stopped gracefully, no kill needed
            await run.wait_new_pid(old)

    asyncio.run(scenario())


def test_probe_failures_inside_the_start_grace_period_do_not_count(tmp_path: Path) -> None:
    port = free_port()  # nobody listens here
    config = fast_config(
        tmp_path,
        program("stubborn_tree.py", tmp_path / "pids"),
        probe={"kind": "tcp", "address": f"127.0.0.1:{port}", "start_grace_seconds": 1.0},
        stop={"timeout_seconds": 0.3},
    )

    async def scenario() -> None:
        async with Running(config) as run:
            await run.wait_state("starting")
            took = await run.wait_state("hung", timeout=5)
            # Without the grace period the third failure would come at ~0.6 s; with it, the
            # first counted failure is the probe at ~1.0 s and the third at ~1.4 s.
            assert 1.2 <= took <= 1.0 + 0.2 * 3 + 0.5, took

    asyncio.run(scenario())


def test_graceful_stop_uses_the_shutdown_endpoint_with_the_token(tmp_path: Path) -> None:
    port = free_port()
    token = tmp_path / "node" / "shutdown.token"
    token.parent.mkdir()
    token.write_text("s3cret\n")
    events = tmp_path / "events"
    config = fast_config(
        tmp_path,
        program("pulse_node.py", port, "--token-file", token, "--events", events),
        node={"config_dir": str(token.parent)},
        probe={"kind": "http", "url": f"http://127.0.0.1:{port}/pulse"},
        stop={"shutdown_url": f"http://127.0.0.1:{port}/shutdown"},
    )

    async def scenario() -> None:
        async with Running(config) as run:
            await run.wait_state("running")
            pid = run.pid
        assert f"stop {pid} endpoint" in events.read_text()
        assert run.sup.status.last_exit.reason == "stopped"  # type: ignore[union-attr]
        assert run.sup.status.last_exit.code == 0  # type: ignore[union-attr]
        assert run.state == "stopped"

    asyncio.run(scenario())


def test_graceful_stop_falls_back_to_sigterm_without_a_token(tmp_path: Path) -> None:
    port = free_port()
    events = tmp_path / "events"
    config = fast_config(
        tmp_path,
        program("pulse_node.py", port, "--events", events),
        probe={"kind": "http", "url": f"http://127.0.0.1:{port}/pulse"},
        stop={"shutdown_url": f"http://127.0.0.1:{port}/shutdown"},
    )

    async def scenario() -> None:
        async with Running(config) as run:
            await run.wait_state("running")
            pid = run.pid
        assert f"stop {pid} sigterm" in events.read_text()

    asyncio.run(scenario())


def test_a_tree_that_ignores_the_stop_is_killed_after_the_timeout_with_no_orphans(
    tmp_path: Path,
) -> None:
    pids = tmp_path / "pids"
    config = fast_config(tmp_path, program("stubborn_tree.py", pids), stop={"timeout_seconds": 0.6})

    async def scenario() -> list[int]:
        run = Running(config)
        async with run:
            await wait_until(
                lambda: pids.exists() and len(pids.read_text().split()) == 3, 10, "three pids"
            )
            began = time.monotonic()
            run.sup.request_shutdown()
            assert run.task is not None
            await asyncio.wait_for(run.task, 5)
            took = time.monotonic() - began
        # SIGTERM was ignored by all three; the kill came at the timeout, not before.
        assert 0.6 <= took < 0.6 + 1.0, took
        return [int(p) for p in pids.read_text().split()]

    tree = asyncio.run(scenario())
    assert len(tree) == 3
    for pid in tree:
        assert gone(pid), f"{pid} outlived the stop"


def test_steady_leak_triggers_a_graceful_soft_limit_restart(tmp_path: Path) -> None:
    events = tmp_path / "events"
    config = fast_config(
        tmp_path,
        program("leaker.py", 8, 0.05, events),
        limits={"memory_soft": "80 MiB", "memory_soft_readings": 3, "sample_interval_seconds": 0.1},
    )

    async def scenario() -> None:
        async with Running(config) as run:
            first = await run.wait_new_pid(None)
            await run.wait_new_pid(first, timeout=10)
            status = run.sup.status
            assert status.soft_limit_restarts == 1
            assert status.last_exit is not None and status.last_exit.reason == "memory"
            # Graceful: the node got SIGTERM and exited 0; not counted as a failure.
            assert status.last_exit.code == 0
            assert status.recent_failures == 0 and not status.crash_loop
            assert "memory" in run.errors.reasons()
        line = events.read_text().split()
        assert line[0] == "graceful" and int(line[1]) == first
        # Three readings in a row over 80 MiB happened before the stop.
        assert int(line[2]) >= 80

    asyncio.run(scenario())


def test_hard_memory_limit_is_enforced_and_reported(tmp_path: Path) -> None:
    events = tmp_path / "events"
    config = fast_config(
        tmp_path,
        program("leaker.py", 16, 0.01, events),
        limits={"memory_hard": "200 MiB"},
        restart={"backoff_initial_seconds": 5.0},
    )

    async def scenario() -> None:
        async with Running(config) as run:
            await wait_until(lambda: run.sup.status.last_exit is not None, 10, "an exit")
            mechanism = run.sup.status.limits.memory_hard
            assert mechanism in (MECH_CGROUP_MEMORY, MECH_RLIMIT_AS)
            assert run.sup.snapshot()["memory"]["hard_mechanism"] == mechanism
            exit_ = run.sup.status.last_exit
            assert exit_ is not None and exit_.reason == "crash"
            if mechanism == MECH_RLIMIT_AS:
                # Allocation failed inside the node before 200 MiB of address space.
                kind, _, held = events.read_text().split()
                assert kind == "memoryerror" and int(held) < 200
                assert exit_.code == 3
                assert any("RLIMIT_AS" in n for n in run.sup.status.limits.notes)
            else:
                assert exit_.code == -signal.SIGKILL  # the OOM killer inside the cgroup

    asyncio.run(scenario())


def test_not_set_up_means_needs_setup_without_a_restart_loop(tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    code = f"open({str(starts)!r}, 'a').write('x'); raise SystemExit(78)"
    config = fast_config(tmp_path, [PY, "-c", code], node={"setup_recheck_seconds": 0.5})

    def start_count() -> int:
        return len(starts.read_text()) if starts.exists() else 0

    async def scenario() -> None:
        began = time.monotonic()
        async with Running(config) as run:
            await run.wait_state("needs-setup", timeout=60)
            # Two rechecks, then the state they leave: a recheck starts the program, so
            # at a random instant the state may be "running" (on a loaded machine for a
            # while); a sample after a sleep would measure the load, not the keeper.
            await wait_until(lambda: start_count() >= 3, 60, "two rechecks")
            await run.wait_state("needs-setup", timeout=60)
            elapsed = time.monotonic() - began
            status = run.sup.status
            assert status.restarts == 0 and not status.crash_loop
            assert status.recent_failures == 0
            assert status.last_exit is not None and status.last_exit.reason == "not-set-up"
            # Rechecked every 0.5 s, not restarted in a tight loop; told once in the index.
            assert start_count() <= elapsed / 0.5 + 2
            assert run.errors.reasons() == ["needs-setup"]

    asyncio.run(scenario())


def test_a_program_that_cannot_start_is_retried_with_backoff(tmp_path: Path) -> None:
    config = fast_config(tmp_path, [str(tmp_path / "no-such-node")])

    async def scenario() -> None:
        async with Running(config) as run:
            await wait_until(lambda: run.sup.status.restarts >= 2, 5, "two retries")
            exit_ = run.sup.status.last_exit
            assert exit_ is not None and exit_.reason == "start-failed" and exit_.code is None
            assert run.sup.backoff.failures >= 2

    asyncio.run(scenario())


def test_status_api_serves_json_and_prometheus_metrics(tmp_path: Path) -> None:
    port = free_port()
    config = fast_config(
        tmp_path,
        program("pulse_node.py", port),
        probe={"kind": "http", "url": f"http://127.0.0.1:{port}/pulse"},
        limits={"cpu_cores": 1, "memory_soft": "1 GiB"},
    )
    host, status_port = config.status_host_port()

    async def scenario() -> None:
        async with Running(config) as run:
            server = await serve_status(host, status_port, run.sup.snapshot)
            try:
                await run.wait_state("running")
                await wait_until(lambda: run.sup.status.cpu_percent is not None, 3, "a sample")
                base = f"http://{host}:{status_port}"
                answer = await loopback.request("GET", base + "/status", timeout=2)
                import json

                data = json.loads(answer.body)
                assert answer.status == 200
                assert data["state"] == "running" and data["pid"] == run.pid
                assert data["version"] == "1.2.3"
                assert (
                    data["last_pulse"]["ok"] and data["last_pulse"]["data"]["schema_version"] == 1
                )
                assert data["memory"]["bytes"] > 1_000_000 and data["memory"]["soft_limit"] == 2**30
                assert data["cpu"]["cores"] == [psutil.Process().cpu_affinity()[0]]
                assert data["uptime_seconds"] > 0
                metrics = (await loopback.request("GET", base + "/metrics", timeout=2)).body
                text = metrics.decode()
                assert "nodekeeper_node_up 1.0" in text
                assert 'nodekeeper_node_state{state="running"} 1.0' in text
                assert "nodekeeper_node_memory_bytes" in text
                missing = await loopback.request("GET", base + "/nope", timeout=2)
                assert missing.status == 404
            finally:
                server.close()

    asyncio.run(scenario())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_cpu_limits_affinity_priority_and_gomaxprocs_reach_the_node(tmp_path: Path) -> None:
    cores = psutil.Process().cpu_affinity()
    code = (
        "import os, time; print('GOMAXPROCS=' + os.environ.get('GOMAXPROCS', '-'), flush=True);"
        "time.sleep(60)"
    )
    config = fast_config(
        tmp_path,
        [PY, "-c", code],
        limits={"cpu_cores": [cores[-1]], "below_normal_priority": True, "cpu_rate_percent": 50},
    )

    async def scenario() -> None:
        async with Running(config) as run:
            await run.wait_state("running")
            await wait_until(lambda: run.sink.lines, 5, "output")
            node = psutil.Process(run.pid)
            assert node.cpu_affinity() == [cores[-1]]
            # nice 10, or the keeper's own if that is lower already (a run under
            # `nice -n 15`): the keeper never raises its node's priority.
            assert node.nice() == max(10, os.getpriority(os.PRIO_PROCESS, 0))
            assert ("stdout", "GOMAXPROCS=1") in run.sink.lines
            report = run.sup.status.limits
            assert report.affinity == "sched_setaffinity" and report.priority == "nice 10"
            # Either the cgroup enforces the cap, or status says plainly that nothing does.
            if report.cpu_rate == "none":
                assert any("CPU rate cap not in force" in n for n in report.notes)
            else:
                group = Path((run.sup.snapshot()["limit_notes"] and "") or "")
                assert report.cpu_rate == "cgroup-v2 cpu.max", group

    asyncio.run(scenario())


def test_shutdown_can_be_requested_from_another_thread_or_before_the_start(
    tmp_path: Path,
) -> None:
    config = fast_config(tmp_path, [PY, "-c", "import time; time.sleep(60)"])

    async def scenario() -> None:
        run = Running(config)
        async with run:
            await run.wait_state("running")
            pid = run.pid
            assert pid is not None
            # As a Windows service's stop handler does: from its own thread.
            threading.Thread(target=run.sup.request_shutdown).start()
            assert run.task is not None
            await asyncio.wait_for(asyncio.shield(run.task), 5)
            assert gone(pid) and run.state == "stopped"

        early = Running(config)
        early.sup.request_shutdown()
        async with early:
            assert early.task is not None
            await asyncio.wait_for(asyncio.shield(early.task), 5)
        assert early.sup.status.last_exit is None  # nothing was started

    asyncio.run(scenario())
