"""Linux (and other POSIX) implementation of the platform interface.

- Own process group: the node starts in a new session (``setsid``), so SIGTERM/SIGKILL go
  to the whole group with one ``killpg`` and the keeper's terminal does not signal it.
- Own cgroup v2 where the keeper can make one: it catches descendants that leave the
  process group (a daemon that calls setsid), measures the whole tree, and carries
  ``memory.max`` / ``cpu.max`` when those controllers are delegated to the keeper.
- Hard memory limit without a memory controller: RLIMIT_AS, set in the child before exec.
  It limits address space, not resident memory; a Go node reserves far more address
  space than it touches, so the limit must be set generously there
  (docs/decisions/012-resource-limits-and-memory.md).
- The node dies with the keeper: PR_SET_PDEATHSIG(SIGKILL) in the child, and a keeper that
  restarts after being killed removes whatever its predecessor left (``kill_leftover``).
  Under the launcher (``ShimOptions``) the node is the child of a node shim instead and
  dies with the shim, so that a keeper hand-over leaves it running and the next keeper
  takes it over (``adopt``; docs/decisions/063-node-shim-owns-the-node-across-handovers.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

if TYPE_CHECKING:
    from nodekeeper.platform.shim_client import Attachment

from nodekeeper.nodeshim import protocol as shim_protocol
from nodekeeper.nodeshim.childsetup import child_setup
from nodekeeper.platform import cgroup
from nodekeeper.platform.base import (
    MECH_CGROUP_CPU,
    MECH_CGROUP_MEMORY,
    MECH_NICE,
    MECH_NONE,
    MECH_RLIMIT_AS,
    MECH_SCHED_AFFINITY,
    AdoptionRefused,
    LaunchSpec,
    LimitReport,
    Platform,
    ProcessHandle,
    ResourceLimits,
    SubprocessHandle,
    Usage,
)
from nodekeeper.platform.shimmed import (
    ShimAttached,
    ShimOptions,
    attach_recorded,
    recorded_limits,
    start_attached,
)

__all__ = ["PosixHandle", "PosixPlatform", "ShimOptions", "ShimmedHandle"]

NICE_BELOW_NORMAL = 10
CPU_PERIOD_USEC = 100_000
# Lines of node output longer than this are split rather than failing the reader.
STREAM_LIMIT = 1024 * 1024


class PosixHandle(SubprocessHandle):
    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        create_time: float,
        group: Path | None,
        limits: LimitReport,
    ) -> None:
        super().__init__(proc, limits)
        self.create_time = create_time
        self.cgroup = group
        # Descendants seen so far (pid → create time), so that kill_tree can still find a
        # grandchild whose parent died and that left the process group.
        self.seen: dict[int, float] = {}

    def identity(self) -> dict[str, Any]:
        return {
            "platform": "posix",
            "pid": self.pid,
            "pgid": self.pid,
            "create_time": self.create_time,
            "cgroup": str(self.cgroup) if self.cgroup else None,
        }


class ShimmedHandle(ShimAttached, PosixHandle):
    """A node that is the child of a node shim: its output and exit come through the
    shim; signals, the cgroup and the tree walk work on it as on a direct child."""

    def __init__(
        self,
        attachment: Attachment,
        create_time: float,
        group: Path | None,
        limits: LimitReport,
    ) -> None:
        # Not SubprocessHandle.__init__: there is no asyncio subprocess here.
        self._take_attachment(attachment)
        self.limits = limits
        self.create_time = create_time
        self.cgroup = group
        self.seen: dict[int, float] = {}

    def identity(self) -> dict[str, Any]:
        record = super().identity()
        record["limits"] = self.limits.as_dict()
        record["shim"] = self.shim_record()
        return record


class PosixPlatform(Platform):
    name = "posix"
    graceful_signal_name = "SIGTERM"

    def __init__(self, shim: ShimOptions | None = None) -> None:
        self._swept = False
        self.shim = shim

    def describe_limits(self, limits: ResourceLimits) -> LimitReport:
        return self._report(limits, cgroup.plan(_wanted(limits)))

    async def start(self, spec: LaunchSpec) -> ProcessHandle:
        limits = spec.limits
        placement = cgroup.plan(_wanted(limits)) if sys.platform.startswith("linux") else None
        group = None
        if placement is not None and placement.parent is not None:
            if not self._swept:
                cgroup.remove_stale(placement.parent)
                self._swept = True
            group = cgroup.create(placement.parent, spec.name)
        if group is None and placement is not None:
            placement.available = set()
        report = self._report(limits, placement)
        if group is not None:
            if report.memory_hard == MECH_CGROUP_MEMORY:
                cgroup.write(group, "memory.max", str(limits.memory_hard_bytes))
                # Without this the kernel swaps the node out instead of enforcing the limit.
                cgroup.write(group, "memory.swap.max", "0")
            if report.cpu_rate == MECH_CGROUP_CPU and limits.cpu_rate_percent:
                quota = max(1000, int(CPU_PERIOD_USEC * limits.cpu_rate_percent / 100))
                cgroup.write(group, "cpu.max", f"{quota} {CPU_PERIOD_USEC}")
        rlimit_as = limits.memory_hard_bytes if report.memory_hard == MECH_RLIMIT_AS else None
        nice = NICE_BELOW_NORMAL if limits.below_normal_priority else None
        procs_file = str(group / "cgroup.procs") if group else None
        if self.shim is not None:
            setup = shim_protocol.ChildSetup(
                procs_file=procs_file,
                rlimit_as=rlimit_as,
                cores=list(limits.cpu_cores) if limits.cpu_cores is not None else None,
                nice=nice,
            )
            try:
                return await self._start_under_shim(spec, setup, group, report)
            except BaseException:
                if group is not None:
                    cgroup.remove(group)
                raise
        preexec = child_setup(
            parent_pid=os.getpid(),
            procs_file=procs_file,
            rlimit_as=rlimit_as,
            cores=limits.cpu_cores,
            nice=nice,
        )
        try:
            proc = await asyncio.create_subprocess_exec(
                *spec.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=dict(spec.env),
                cwd=spec.cwd,
                start_new_session=True,
                preexec_fn=preexec,
                limit=STREAM_LIMIT,
            )
        except BaseException:
            if group is not None:
                cgroup.remove(group)
            raise
        try:
            create_time = psutil.Process(proc.pid).create_time()
        except psutil.Error:
            create_time = 0.0  # exited already; the handle still reports its exit
        return PosixHandle(proc, create_time, group, report)

    async def _start_under_shim(
        self,
        spec: LaunchSpec,
        setup: shim_protocol.ChildSetup,
        group: Path | None,
        report: LimitReport,
    ) -> ShimmedHandle:
        assert self.shim is not None
        _, attachment = await start_attached(self.shim, spec, STREAM_LIMIT, child=setup)
        try:
            create_time = psutil.Process(attachment.node_pid).create_time()
        except psutil.Error:
            create_time = 0.0  # exited already; the shim still reports its exit
        return ShimmedHandle(attachment, create_time, group, report)

    async def adopt(self, identity: Mapping[str, Any]) -> ProcessHandle:
        if identity.get("platform") != "posix":
            raise AdoptionRefused("the node was recorded by another platform")
        attachment = await attach_recorded(identity, STREAM_LIMIT)
        group_path = identity.get("cgroup")
        group = Path(group_path) if group_path and Path(group_path).is_dir() else None
        return ShimmedHandle(
            attachment,
            float(identity.get("create_time", 0.0)),
            group,
            recorded_limits(identity),
        )

    def request_stop(self, handle: ProcessHandle) -> bool:
        # The whole group, like a terminal's Ctrl-C and systemd's default KillMode: helpers
        # the node started get the same chance to finish.
        if handle.returncode is not None:
            return True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(handle.pid, signal.SIGTERM)
        return True

    def kill_tree(self, handle: ProcessHandle) -> None:
        assert isinstance(handle, PosixHandle)
        if handle.cgroup is not None:
            cgroup.kill(handle.cgroup)
        if handle.returncode is None:
            # The root is alive (not yet reaped), so its pid is still its own: safe to walk.
            handle.seen.update(_descendants(handle.pid))
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(handle.pid, signal.SIGKILL)
        for pid, created in list(handle.seen.items()):
            _kill_if_same(pid, created)

    def usage(self, handle: ProcessHandle) -> Usage | None:
        assert isinstance(handle, PosixHandle)
        if handle.returncode is not None:
            return None
        if handle.cgroup is not None:
            members = cgroup.pids(handle.cgroup)
        else:
            found = _descendants(handle.pid)
            handle.seen.update(found)
            members = [handle.pid, *found]
        rss = 0
        cpu = 0.0
        alive = 0
        for pid in members:
            try:
                proc = psutil.Process(pid)
                with proc.oneshot():
                    rss += proc.memory_info().rss
                    times = proc.cpu_times()
                    cpu += times.user + times.system + times.children_user + times.children_system
                alive += 1
            except psutil.Error:
                continue
        if handle.cgroup is not None:
            # Whole-tree accounting by the kernel beats summing: it includes children that
            # already exited and does not double-count shared pages.
            cpu = cgroup.cpu_seconds(handle.cgroup) or cpu
            current = cgroup.memory_current(handle.cgroup)
            if current is not None:
                return Usage(current, "cgroup", cpu, alive)
        return Usage(rss, "rss", cpu, alive)

    def release(self, handle: ProcessHandle) -> None:
        assert isinstance(handle, PosixHandle)
        if handle.cgroup is not None and cgroup.remove(handle.cgroup):
            handle.cgroup = None

    def kill_leftover(self, identity: Mapping[str, Any]) -> int:
        if identity.get("platform") != "posix":
            return 0
        killed = _kill_shim(identity.get("shim"))
        pid = int(identity.get("pid", 0))
        created = float(identity.get("create_time", 0.0))
        group_path = identity.get("cgroup")
        if group_path and Path(group_path).is_dir():
            path = Path(group_path)
            killed += len(cgroup.pids(path))
            cgroup.kill(path)
            for _ in range(50):
                if cgroup.remove(path):
                    break
                # The kernel needs a moment to empty a cgroup after SIGKILL.
                import time

                time.sleep(0.02)
        # Members of the old process group, created no earlier than its leader: a pid
        # reused since then would have a different group or an earlier creation time...
        # unless it was recycled as a new group leader, which create_time rules out too.
        for proc in psutil.process_iter(["pid", "create_time"]):
            try:
                if os.getpgid(proc.pid) != pid or proc.info["create_time"] < created - 0.01:
                    continue
                proc.kill()
                killed += 1
            except (psutil.Error, ProcessLookupError, PermissionError):
                continue
        return killed

    @staticmethod
    def _report(limits: ResourceLimits, placement: cgroup.CgroupPlan | None) -> LimitReport:
        available = placement.available if placement else set()
        notes = []
        memory = cpu = affinity = priority = MECH_NONE
        if limits.memory_hard_bytes is not None:
            if "memory" in available:
                memory = MECH_CGROUP_MEMORY
            else:
                memory = MECH_RLIMIT_AS
                notes.append(
                    "hard memory limit: no cgroup v2 memory controller"
                    + (f" ({placement.reason})" if placement and placement.reason else "")
                    + "; using RLIMIT_AS (limits address space, not resident memory)"
                )
        if limits.cpu_rate_percent is not None:
            if "cpu" in available:
                cpu = MECH_CGROUP_CPU
            else:
                notes.append(
                    "CPU rate cap not in force: no cgroup v2 cpu controller"
                    + (f" ({placement.reason})" if placement and placement.reason else "")
                )
        if limits.cpu_cores is not None:
            if hasattr(os, "sched_setaffinity"):
                affinity = MECH_SCHED_AFFINITY
            else:
                notes.append("core affinity not in force: no sched_setaffinity on this OS")
        if limits.below_normal_priority:
            priority = f"{MECH_NICE} {NICE_BELOW_NORMAL}"
        return LimitReport(memory, cpu, affinity, priority, tuple(notes))


def _wanted(limits: ResourceLimits) -> set[str]:
    wanted = set()
    if limits.memory_hard_bytes is not None:
        wanted.add("memory")
    if limits.cpu_rate_percent is not None:
        wanted.add("cpu")
    return wanted


def _kill_shim(shim: Any) -> int:
    """The node shim of a recorded tree, if it still runs (its node dies with it). Checked
    by its command line, so a reused pid is never hit."""
    if not isinstance(shim, Mapping):
        return 0
    try:
        proc = psutil.Process(int(shim.get("pid", 0)))
        if "nodekeeper.nodeshim" not in proc.cmdline():
            return 0
        proc.kill()
        return 1
    except (psutil.Error, ValueError):
        return 0


def _descendants(pid: int) -> dict[int, float]:
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return {}
    found = {}
    for child in children:
        with contextlib.suppress(psutil.Error):
            found[child.pid] = child.create_time()
    return found


def _kill_if_same(pid: int, created: float) -> None:
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - created) < 0.01:
            proc.kill()
    except psutil.Error:
        pass
