"""The POSIX platform against real processes: limits in force, tree kill, measurement,
leftover cleanup. Skipped off Linux (it reads /proc)."""

from __future__ import annotations

import asyncio
import os
import resource
import sys
import time
from pathlib import Path

import psutil
import pytest

from nodekeeper.platform import cgroup, current_platform
from nodekeeper.platform.base import (
    MECH_CGROUP_MEMORY,
    MECH_NONE,
    MECH_RLIMIT_AS,
    LaunchSpec,
    ResourceLimits,
)
from nodekeeper.platform.posix import PosixHandle, PosixPlatform
from tests.keeper.conftest import PY, gone

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux /proc"),
    pytest.mark.timeout(60),
]

SLEEPER = [PY, "-c", "import time; print('up', flush=True); time.sleep(60)"]
# Starts a child in a new session (it leaves the process group), prints its pid, sleeps.
ESCAPER = [
    PY,
    "-c",
    "import subprocess, sys, time\n"
    "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],"
    " start_new_session=True)\n"
    "print(c.pid, flush=True); time.sleep(60)",
]
BUSY = [PY, "-c", "import time\nend = time.time() + 60\nwhile time.time() < end: pass"]


def spec(argv: list[str], limits: ResourceLimits | None = None) -> LaunchSpec:
    return LaunchSpec(argv=argv, env=dict(os.environ), limits=limits or ResourceLimits())


async def started(argv: list[str], limits: ResourceLimits | None = None) -> PosixHandle:
    handle = await current_platform().start(spec(argv, limits))
    assert isinstance(handle, PosixHandle)
    return handle


async def finish(handle: PosixHandle) -> None:
    platform = current_platform()
    platform.kill_tree(handle)
    await asyncio.wait_for(handle.wait(), 5)
    for _ in range(100):
        platform.release(handle)
        if handle.cgroup is None:
            return
        await asyncio.sleep(0.01)


def test_current_platform_is_posix() -> None:
    assert isinstance(current_platform(), PosixPlatform)
    assert current_platform() is current_platform()


def test_limits_are_in_force_in_the_child() -> None:
    cores = psutil.Process().cpu_affinity()
    limits = ResourceLimits(
        memory_hard_bytes=300 * 2**20, cpu_cores=(cores[0],), below_normal_priority=True
    )

    async def scenario() -> None:
        handle = await started(SLEEPER, limits)
        try:
            assert await handle.stdout.readline() == b"up\n"
            child = psutil.Process(handle.pid)
            assert child.cpu_affinity() == [cores[0]]
            # nice 10, or the keeper's own if that is lower already (a run under
            # `nice -n 15`): the keeper never raises its node's priority.
            assert child.nice() == max(10, os.getpriority(os.PRIO_PROCESS, 0))
            # Own process group and session: the keeper's terminal signals do not reach it.
            assert os.getpgid(handle.pid) == handle.pid == os.getsid(handle.pid)
            if handle.limits.memory_hard == MECH_RLIMIT_AS:
                soft, hard = resource.prlimit(handle.pid, resource.RLIMIT_AS)
                assert soft == hard == 300 * 2**20
            else:
                assert handle.limits.memory_hard == MECH_CGROUP_MEMORY
                assert handle.cgroup is not None
                assert (handle.cgroup / "memory.max").read_text().strip() == str(300 * 2**20)
            if handle.cgroup is not None:
                # The node was born inside its own cgroup.
                line = Path(f"/proc/{handle.pid}/cgroup").read_text().splitlines()[-1]
                assert line.startswith("0::") and handle.cgroup.name in line
        finally:
            await finish(handle)

    asyncio.run(scenario())


def test_kill_tree_catches_a_descendant_that_left_the_process_group() -> None:
    async def scenario() -> None:
        platform = current_platform()
        handle = await started(ESCAPER)
        escaped = int(await handle.stdout.readline())
        assert os.getpgid(escaped) != handle.pid
        usage = platform.usage(handle)  # also remembers the tree as seen now
        assert usage is not None and usage.processes == 2
        platform.kill_tree(handle)
        assert await asyncio.wait_for(handle.wait(), 5) == -9
        deadline = time.monotonic() + 3
        while not gone(escaped):
            assert time.monotonic() < deadline, "the escaped child survived"
            await asyncio.sleep(0.01)
        platform.kill_tree(handle)  # idempotent on a dead tree
        assert platform.request_stop(handle)  # and no error for an exited node
        assert platform.usage(handle) is None
        await finish(handle)

    asyncio.run(scenario())


def test_usage_measures_memory_and_cpu_of_the_tree() -> None:
    async def scenario() -> None:
        platform = current_platform()
        handle = await started(BUSY)
        try:
            first = platform.usage(handle)
            await asyncio.sleep(0.5)
            second = platform.usage(handle)
            assert first is not None and second is not None
            assert second.memory_bytes > 2_000_000 and second.memory_kind in ("rss", "cgroup")
            # A busy loop: at least a fifth of a core over the half second, on a shared box.
            assert second.cpu_seconds - first.cpu_seconds > 0.1
        finally:
            await finish(handle)

    asyncio.run(scenario())


def test_kill_leftover_checks_identity_before_killing() -> None:
    async def scenario() -> None:
        platform = current_platform()
        handle = await started(ESCAPER)
        escaped = int(await handle.stdout.readline())
        identity = handle.identity()
        # A record whose creation time does not match is a recycled pid: leave it alone.
        recycled = {**identity, "create_time": identity["create_time"] - 1000, "cgroup": None}
        assert platform.kill_leftover({**recycled, "pgid": -1, "pid": -1}) == 0
        assert platform.kill_leftover({"platform": "windows", "pid": handle.pid}) == 0
        assert not gone(handle.pid)
        killed = platform.kill_leftover(identity)
        assert killed >= 1
        assert await asyncio.wait_for(handle.wait(), 5) == -9
        if identity["cgroup"]:
            # The cgroup held the escaped child too, and is gone with it.
            deadline = time.monotonic() + 3
            while not gone(escaped):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            assert not Path(identity["cgroup"]).exists()
        else:
            psutil.Process(escaped).kill()
        await finish(handle)

    asyncio.run(scenario())


def test_a_missing_program_raises_and_leaves_no_cgroup(tmp_path: Path) -> None:
    async def scenario() -> None:
        with pytest.raises(OSError):
            await current_platform().start(spec([str(tmp_path / "missing")]))

    parent = cgroup.plan(set()).parent

    def ours() -> set[Path]:
        # Only this process's groups: other xdist workers create and remove their own
        # (nodekeeper-<name>-<pid>-<n>) in the same parent at any moment.
        return set(parent.glob(f"nodekeeper-*-{os.getpid()}-*")) if parent else set()

    before = ours()
    asyncio.run(scenario())
    assert ours() == before


def test_describe_limits_reports_each_mechanism_or_why_not() -> None:
    platform = current_platform()
    nothing = platform.describe_limits(ResourceLimits())
    assert (nothing.memory_hard, nothing.cpu_rate, nothing.affinity, nothing.priority) == (
        MECH_NONE, MECH_NONE, MECH_NONE, MECH_NONE,
    )  # fmt: skip
    assert nothing.notes == ()
    wanted = platform.describe_limits(
        ResourceLimits(memory_hard_bytes=2**30, cpu_rate_percent=50, cpu_cores=(0,),
                       below_normal_priority=True)
    )  # fmt: skip
    assert wanted.memory_hard in (MECH_CGROUP_MEMORY, MECH_RLIMIT_AS)
    assert (wanted.memory_hard == MECH_RLIMIT_AS) == any("RLIMIT_AS" in n for n in wanted.notes)
    assert (wanted.cpu_rate == MECH_NONE) == any("CPU rate cap" in n for n in wanted.notes)
    assert wanted.affinity == "sched_setaffinity" and wanted.priority == "nice 10"
    assert wanted.as_dict()["notes"] == list(wanted.notes)
