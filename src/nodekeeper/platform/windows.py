"""Windows implementation of the platform interface: one Job Object per node tree.

- Start: the node is created suspended, in a new process group, put in a fresh Job Object
  with every limit already set, and only then resumed, so not one instruction of it runs
  outside the job or its limits, and every process it starts lands in the same job.
- Dies with the keeper: the job has JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE and only the
  keeper holds a handle to it, so when the keeper exits, however abruptly, Windows closes
  the handle and kills the whole tree.
- Graceful stop: CTRL_BREAK_EVENT to the node's process group (windows_console.py says
  why, and how a service without a console still gets to send it).
- Kill: TerminateJobObject, one call for the whole tree, grandchildren included.
- Limits: the job's memory limits (hard), CPU rate control (hard cap), affinity and
  priority class. Affinity and priority are also set on the node's process directly
  before it resumes: identical on Windows, and visible where a job's limits are not
  applied (Wine stores none of them).
- Memory is read as private bytes (commit charge), which is what grows when a node leaks
  and what the job memory limit counts; the working set shrinks under memory pressure and
  would hide a leak.
- Under the launcher (``ShimOptions``) the node is the child of a node shim, which makes
  the job with the same limits, puts itself in it and holds its handle, so the node
  outlives a keeper hand-over and dies with the shim (decision 063). The keeper opens the
  job by name for usage and tree kill, leaving the shim out of both.

pywin32 is imported here at module level: this module is only imported on Windows
(``nodekeeper.platform.current_platform``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

import pywintypes
import win32api
import win32con
import win32process

from nodekeeper.nodeshim import protocol as shim_protocol
from nodekeeper.platform import windows_console as console
from nodekeeper.platform import windows_job as jobs
from nodekeeper.platform import windows_process as winproc
from nodekeeper.platform.base import (
    MECH_JOB_AFFINITY,
    MECH_JOB_CPU_RATE,
    MECH_JOB_MEMORY,
    MECH_NONE,
    MECH_PRIORITY_CLASS,
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

if TYPE_CHECKING:
    from nodekeeper.platform.shim_client import Attachment

# Exit status of a tree killed by kill_tree / kill_leftover (what `taskkill /F` uses).
KILLED_EXIT_CODE = 1
# Lines of node output longer than this are split rather than failing the reader.
STREAM_LIMIT = 1024 * 1024


class WindowsHandle(SubprocessHandle):
    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        process: Any,
        job: Any,
        job_name: str,
        created: float,
        limits: LimitReport,
    ) -> None:
        super().__init__(proc, limits)
        self.process = process  # our own handle: keeps the pid from being recycled
        self.job: Any | None = job
        self.job_name = job_name
        self.created = created

    def identity(self) -> dict[str, Any]:
        return {
            "platform": "windows",
            "pid": self.pid,
            "create_time": self.created,
            "job": self.job_name,
        }


class ShimmedWindowsHandle(ShimAttached, ProcessHandle):
    """A node that is the child of a node shim, in the job the shim holds. The keeper's
    handle to the job (opened by name) is for usage and tree kill only: it is closed as
    soon as the node's exit is known, so that the shim's stays the one that counts."""

    def __init__(
        self, attachment: Attachment, job: Any, job_name: str, created: float, limits: LimitReport
    ) -> None:
        self._take_attachment(attachment)
        self.job: Any | None = job
        self.job_name = job_name
        self.created = created
        self.limits = limits

    def identity(self) -> dict[str, Any]:
        return {
            "platform": "windows",
            "pid": self.pid,
            "create_time": self.created,
            "job": self.job_name,
            "limits": self.limits.as_dict(),
            "shim": self.shim_record(),
        }


class WindowsPlatform(Platform):
    name = "windows"
    graceful_signal_name = "CTRL_BREAK_EVENT"

    def __init__(self, shim: ShimOptions | None = None) -> None:
        self.shim = shim

    @cached_property
    def _cpu_rate_error(self) -> int:
        """0 when this Windows accepts a job CPU rate cap, else the error it gives.
        Asked once with a throw-away job: Windows 7 and Wine refuse the class."""
        probe = jobs.create("")
        try:
            return jobs.set_cpu_rate(probe, jobs.CPU_RATE_FULL)
        finally:
            probe.Close()

    def describe_limits(self, limits: ResourceLimits) -> LimitReport:
        limits, notes = _usable(limits)
        cpu = MECH_NONE
        if limits.cpu_rate_percent is not None:
            if self._cpu_rate_error:
                notes.append(_cpu_rate_note(self._cpu_rate_error))
            else:
                cpu = MECH_JOB_CPU_RATE
        return LimitReport(
            memory_hard=MECH_JOB_MEMORY if limits.memory_hard_bytes is not None else MECH_NONE,
            cpu_rate=cpu,
            affinity=MECH_JOB_AFFINITY if limits.cpu_cores is not None else MECH_NONE,
            priority=MECH_PRIORITY_CLASS if limits.below_normal_priority else MECH_NONE,
            notes=tuple(notes),
        )

    async def start(self, spec: LaunchSpec) -> ProcessHandle:
        try:
            if self.shim is not None:
                return await self._start_under_shim(spec)
            return await self._start(spec)
        except pywintypes.error as exc:
            # The interface promises OSError for "could not start"; pywin32 raises its own.
            raise OSError(exc.winerror, f"{exc.funcname}: {exc.strerror}") from exc

    async def _start(self, spec: LaunchSpec) -> WindowsHandle:
        report = self.describe_limits(spec.limits)
        wanted = jobs.job_limits(_usable(spec.limits)[0], os.cpu_count() or 1)
        if not console.ensure_console():
            report = _with_note(report, _NO_CONSOLE_NOTE)
        name = jobs.job_name(spec.name)
        job = jobs.create(name)
        try:
            # Limits first, process second: the job is complete before anything joins it.
            jobs.set_extended_limits(job, wanted)
            if wanted.cpu_rate is not None and report.cpu_rate == MECH_JOB_CPU_RATE:
                error = jobs.set_cpu_rate(job, wanted.cpu_rate)
                if error:
                    report = _without_cpu_rate(report, error)
            proc = await asyncio.create_subprocess_exec(
                *spec.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=dict(spec.env),
                cwd=spec.cwd,
                creationflags=_creation_flags(spec.limits),
                limit=STREAM_LIMIT,
            )
        except BaseException:
            job.Close()
            raise
        process = None
        try:
            process = winproc.open_process(proc.pid)
            jobs.assign(job, process)
            # Also on the process itself, not only through the job: see the docstring.
            if wanted.affinity:
                win32process.SetProcessAffinityMask(process, wanted.affinity)
            if wanted.priority_class:
                win32process.SetPriorityClass(process, wanted.priority_class)
            created = winproc.creation_time(process)
            winproc.resume(process)
        except BaseException:
            # Never leave a suspended orphan: closing the job kills what is in it, and
            # the explicit kill covers a failure before the assignment.
            with contextlib.suppress(OSError):
                proc.kill()
            if process is not None:
                process.Close()
            job.Close()
            raise
        return WindowsHandle(proc, process, job, name, created, report)

    async def _start_under_shim(self, spec: LaunchSpec) -> ShimmedWindowsHandle:
        assert self.shim is not None
        report = self.describe_limits(spec.limits)
        wanted = jobs.job_limits(_usable(spec.limits)[0], os.cpu_count() or 1)
        name = jobs.job_name(spec.name)
        numbers = asdict(wanted)
        if report.cpu_rate != MECH_JOB_CPU_RATE:
            numbers["cpu_rate"] = None  # refused here already (describe_limits said why)
        job_spec = shim_protocol.JobSpec(name=name, **numbers)
        started, attachment = await start_attached(self.shim, spec, STREAM_LIMIT, job=job_spec)
        error = int((started.job or {}).get("cpu_rate_error") or 0)
        if error and report.cpu_rate == MECH_JOB_CPU_RATE:
            report = _without_cpu_rate(report, error)
        return ShimmedWindowsHandle(
            attachment, jobs.open_existing(name), name, _filetime_seconds(attachment.node_start),
            report,
        )  # fmt: skip

    async def adopt(self, identity: Mapping[str, Any]) -> ProcessHandle:
        if identity.get("platform") != "windows":
            raise AdoptionRefused("the node was recorded by another platform")
        # The job first: a refusal after attaching would have taken lines from the shim.
        name = str(identity.get("job") or "")
        job = jobs.open_existing(name) if name else None
        if job is None:
            raise AdoptionRefused(f"the node's job {name!r} cannot be opened")
        try:
            attachment = await attach_recorded(identity, STREAM_LIMIT)
        except BaseException:
            job.Close()
            raise
        return ShimmedWindowsHandle(
            attachment, job, name, float(identity.get("create_time", 0.0)),
            recorded_limits(identity),
        )  # fmt: skip

    def request_stop(self, handle: ProcessHandle) -> bool:
        if handle.returncode is not None:
            return True
        if isinstance(handle, ShimmedWindowsHandle):
            # Only a process on the node's console can send it CTRL_BREAK: the shim's.
            return handle.attachment.request_stop()
        sent, _error = console.send_break(handle.pid)
        return sent

    def kill_tree(self, handle: ProcessHandle) -> None:
        if isinstance(handle, ShimmedWindowsHandle):
            if handle.job is not None:
                _kill_job_except(handle.job, handle.attachment.shim_pid)
            elif handle.returncode is None:  # no job to open: the node by its identity
                _kill_if_same(handle.pid, handle.created)
            return
        assert isinstance(handle, WindowsHandle)
        if handle.job is not None:
            jobs.terminate(handle.job, KILLED_EXIT_CODE)
        # The root also by its own handle: it is in the job unless start() failed midway.
        if handle.returncode is None:
            winproc.terminate(handle.process, KILLED_EXIT_CODE)

    def usage(self, handle: ProcessHandle) -> Usage | None:
        assert isinstance(handle, WindowsHandle | ShimmedWindowsHandle)
        if handle.returncode is not None or handle.job is None:
            return None
        pids = jobs.process_ids(handle.job)
        times = winproc.cpu_seconds_by_pid()
        shim_cpu = 0.0
        if isinstance(handle, ShimmedWindowsHandle):
            # The shim is in the job too; the node's usage is the rest of it.
            shim = handle.attachment.shim_pid
            pids = [pid for pid in pids if pid != shim]
            shim_cpu = times.get(shim, 0.0)
        memory = 0
        cpu = 0.0
        alive = 0
        for pid in pids:
            private = winproc.private_bytes_of(pid)
            if private is None:
                continue  # exited between listing and reading
            memory += private
            cpu += times.get(pid, 0.0)
            alive += 1
        # The job's accounting includes processes that already exited (Windows only;
        # Wine reports 0), the live sum covers Wine: the larger is the better figure.
        with contextlib.suppress(pywintypes.error):
            cpu = max(cpu, jobs.cpu_seconds(handle.job) - shim_cpu)
        return Usage(memory, "private", cpu, alive)

    def release(self, handle: ProcessHandle) -> None:
        if isinstance(handle, ShimmedWindowsHandle):
            # Only our handle: the shim's keeps the job (and the node, after a hand-over).
            if handle.job is not None:
                handle.job.Close()
                handle.job = None
            return
        assert isinstance(handle, WindowsHandle)
        # Closing the last handle to the job kills anything still in it (kill-on-close):
        # a grandchild that outlived the node does not linger after the supervisor is done.
        if handle.job is not None:
            handle.job.Close()
            handle.job = None
        if handle.process is not None:
            handle.process.Close()

    def kill_leftover(self, identity: Mapping[str, Any]) -> int:
        if identity.get("platform") != "windows":
            return 0
        # Normally there is nothing: the old keeper's death closed its job handle and
        # kill-on-close took the tree. The job outlives it only if another process holds
        # a handle to it; then it still names exactly that tree.
        name = str(identity.get("job") or "")
        job = jobs.open_existing(name) if name else None
        if job is not None:
            try:
                pids = jobs.process_ids(job)
                jobs.terminate(job, KILLED_EXIT_CODE)
                return len(pids)
            finally:
                job.Close()
        return _kill_if_same(int(identity.get("pid", 0)), float(identity.get("create_time", 0)))


_NO_CONSOLE_NOTE = (
    "graceful stop unavailable: the keeper has no console and could not allocate one, so "
    "CTRL_BREAK_EVENT cannot reach the node; the stop timeout ends in a tree kill"
)


def _usable(limits: ResourceLimits) -> tuple[ResourceLimits, list[str]]:
    """``limits`` without the cores this machine does not have: Windows refuses the whole
    affinity (and with it the start) if one bit is outside the system's mask."""
    if limits.cpu_cores is None:
        return limits, []
    system_mask = win32process.GetProcessAffinityMask(win32api.GetCurrentProcess())[1]
    usable = tuple(c for c in limits.cpu_cores if 0 <= c < 64 and system_mask >> c & 1)
    dropped = sorted(set(limits.cpu_cores) - set(usable))
    if not dropped:
        return limits, []
    if not usable:
        note = f"core affinity not in force: none of cores {dropped} exist on this machine"
        return replace(limits, cpu_cores=None), [note]
    return replace(limits, cpu_cores=usable), [f"core affinity: cores {dropped} do not exist"]


def _creation_flags(limits: ResourceLimits) -> int:
    flags = subprocess.CREATE_NEW_PROCESS_GROUP | win32process.CREATE_SUSPENDED
    if limits.below_normal_priority:
        flags |= win32process.BELOW_NORMAL_PRIORITY_CLASS  # Wine ignores it: set again later
    return flags


def _cpu_rate_note(error: int) -> str:
    return (
        f"CPU rate cap not in force: Windows refused job CPU rate control (error {error}); "
        "it needs Windows 8 / Server 2012 or later"
    )


def _with_note(report: LimitReport, note: str) -> LimitReport:
    return LimitReport(
        report.memory_hard, report.cpu_rate, report.affinity, report.priority,
        (*report.notes, note),
    )  # fmt: skip


def _without_cpu_rate(report: LimitReport, error: int) -> LimitReport:
    return LimitReport(
        report.memory_hard, MECH_NONE, report.affinity, report.priority,
        (*report.notes, _cpu_rate_note(error)),
    )  # fmt: skip


def _filetime_seconds(filetime: int) -> float:
    """A FILETIME (100 ns since 1601) as seconds since the epoch, as ``creation_time``."""
    return (filetime - 116_444_736_000_000_000) / 1e7 if filetime else 0.0


def _kill_job_except(job: Any, shim_pid: int) -> None:
    """Kill every process in the job but the shim: the shim then reports the node's exit
    after its last lines, as for any other exit. A few rounds, for a process the node
    started while the first round ran (a killed process starts nothing more)."""
    for _ in range(5):
        try:
            pids = [pid for pid in jobs.process_ids(job) if pid != shim_pid]
        except pywintypes.error:
            return  # the job is closing: its processes are being killed
        if not pids:
            return
        for pid in pids:
            try:
                process = winproc.open_process(pid, win32con.PROCESS_TERMINATE)
            except pywintypes.error:
                continue  # gone already
            try:
                winproc.terminate(process, KILLED_EXIT_CODE)
            finally:
                process.Close()


def _kill_if_same(pid: int, created: float) -> int:
    """Kill pid only if it is still the process that was started at ``created``."""
    if pid <= 0:
        return 0
    try:
        process = winproc.open_process(pid)
    except pywintypes.error:
        return 0
    try:
        if abs(winproc.creation_time(process) - created) > 0.001:
            return 0  # the pid was recycled: not ours
        if not winproc.is_running(process):
            return 0
        winproc.terminate(process, KILLED_EXIT_CODE)
        return 1
    finally:
        process.Close()
