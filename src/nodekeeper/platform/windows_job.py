"""Job Objects: the Windows unit that holds, limits, measures and kills the node's tree.

A process assigned to a job stays in it, and so does everything it starts (no breakaway
is allowed), so the job is the tree. Limits go in two structures:

- JOBOBJECT_EXTENDED_LIMIT_INFORMATION (pywin32 has it): kill-on-close, the memory limits,
  affinity and priority class for every process in the job.
- JOBOBJECT_CPU_RATE_CONTROL_INFORMATION (Windows 8+): pywin32 does not know this class,
  so it goes through ctypes.

What each limit turns into is computed by the pure functions at the top, which need no
Windows and are unit tested on Linux; the calls that apply them are below and import
pywin32 lazily.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
from dataclasses import dataclass
from typing import Any

from nodekeeper.platform.base import ResourceLimits

# winnt.h values, spelled out so the pure part needs no pywin32.
JOB_OBJECT_LIMIT_AFFINITY = 0x00000010
JOB_OBJECT_LIMIT_PRIORITY_CLASS = 0x00000020
JOB_OBJECT_LIMIT_PROCESS_MEMORY = 0x00000100
JOB_OBJECT_LIMIT_JOB_MEMORY = 0x00000200
JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE = 0x00002000
JOB_OBJECT_CPU_RATE_CONTROL_ENABLE = 0x1
JOB_OBJECT_CPU_RATE_CONTROL_HARD_CAP = 0x4
BELOW_NORMAL_PRIORITY_CLASS = 0x00004000
JOB_OBJECT_CPU_RATE_CONTROL_INFORMATION_CLASS = 15  # JobObjectCpuRateControlInformation
# CpuRate is in hundredths of a percent of ALL the machine's processors: 10000 = 100 %.
CPU_RATE_FULL = 10_000

_counter = itertools.count()


@dataclass(frozen=True)
class JobLimits:
    """The numbers that go into the job's limit structures for one ResourceLimits."""

    limit_flags: int
    process_memory: int = 0
    job_memory: int = 0
    affinity: int = 0
    priority_class: int = 0
    cpu_rate: int | None = None  # None: no CPU rate control structure is set


def affinity_mask(cores: tuple[int, ...]) -> int:
    """Logical CPU numbers → the bit mask Windows wants (CPU 0 is bit 0)."""
    mask = 0
    for core in cores:
        if core < 0 or core >= 64:
            # One processor group holds at most 64 CPUs; the keeper does not span groups.
            raise ValueError(f"core {core} is outside processor group 0 (0-63)")
        mask |= 1 << core
    return mask


def cpu_rate(percent_of_one_core: float, cpu_count: int) -> int:
    """ResourceLimits' "percent of ONE core" → CpuRate (1/100 % of the whole machine).

    150 % of one core on a 4-CPU machine is 37.5 % of the machine → 3750. Clamped to
    [1, 10000]: 0 would mean "no limit" to Windows, which is never what was asked.
    """
    rate = round(percent_of_one_core * 100 / max(1, cpu_count))
    return max(1, min(CPU_RATE_FULL, rate))


def job_limits(limits: ResourceLimits, cpu_count: int) -> JobLimits:
    """What start() writes into the job for ``limits`` (kill-on-close always)."""
    flags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
    process_memory = job_memory = affinity = priority = 0
    if limits.memory_hard_bytes is not None:
        # The interface promises a ceiling for the whole tree: that is JobMemoryLimit. The
        # per-process limit is set to the same value so that the process that crosses it
        # gets the failed allocation itself (a clear MemoryError / out-of-memory exit in
        # the node's log) rather than whichever process happens to allocate next.
        flags |= JOB_OBJECT_LIMIT_PROCESS_MEMORY | JOB_OBJECT_LIMIT_JOB_MEMORY
        process_memory = job_memory = limits.memory_hard_bytes
    if limits.cpu_cores is not None:
        flags |= JOB_OBJECT_LIMIT_AFFINITY
        affinity = affinity_mask(limits.cpu_cores)
    if limits.below_normal_priority:
        flags |= JOB_OBJECT_LIMIT_PRIORITY_CLASS
        priority = BELOW_NORMAL_PRIORITY_CLASS
    rate = None
    if limits.cpu_rate_percent is not None:
        rate = cpu_rate(limits.cpu_rate_percent, cpu_count)
    return JobLimits(flags, process_memory, job_memory, affinity, priority, rate)


class CpuRateControl(ctypes.Structure):
    """JOBOBJECT_CPU_RATE_CONTROL_INFORMATION: a DWORD of flags, then a union whose
    CpuRate member is a DWORD (the Weight and Min/MaxRate members are not used)."""

    _fields_ = (("ControlFlags", ctypes.c_uint32), ("CpuRate", ctypes.c_uint32))


def cpu_rate_struct(rate: int) -> CpuRateControl:
    flags = JOB_OBJECT_CPU_RATE_CONTROL_ENABLE | JOB_OBJECT_CPU_RATE_CONTROL_HARD_CAP
    return CpuRateControl(flags, rate)


# ---------------------------------------------------------------------------------------
# Calls into Windows (pywin32 and ctypes imported here, never at module import time).


def job_name(node_name: str) -> str:
    """A name unique on this machine: node, keeper pid, counter. Named so a keeper that
    restarts can open a job its predecessor left (kill_leftover)."""
    return f"nodekeeper-{node_name}-{os.getpid()}-{next(_counter)}"


def create(name: str) -> Any:
    """A new job. Its handle is not inheritable, and must not be: a node holding a handle
    to its own job would keep the job open after the keeper died, defeating kill-on-close.
    An empty name makes an unnamed job (pywin32 does not take None)."""
    import win32job

    return win32job.CreateJobObject(None, name)


def open_existing(name: str) -> Any | None:
    import pywintypes
    import win32job

    access = win32job.JOB_OBJECT_QUERY | win32job.JOB_OBJECT_TERMINATE
    try:
        return win32job.OpenJobObject(access, False, name)
    except pywintypes.error:
        return None  # gone: its last handle closed, and kill-on-close took the tree


def set_extended_limits(job: Any, limits: JobLimits) -> None:
    """Writes the extended limit structure; raises pywintypes.error if Windows refuses."""
    import win32job

    cls = win32job.JobObjectExtendedLimitInformation
    info = win32job.QueryInformationJobObject(job, cls)
    basic = info["BasicLimitInformation"]
    basic["LimitFlags"] = limits.limit_flags
    basic["Affinity"] = limits.affinity
    basic["PriorityClass"] = limits.priority_class
    info["ProcessMemoryLimit"] = limits.process_memory
    info["JobMemoryLimit"] = limits.job_memory
    win32job.SetInformationJobObject(job, cls, info)


def set_cpu_rate(job: Any, rate: int) -> int:
    """Sets a hard CPU rate cap; returns 0 on success or the Windows error code (87 on
    Windows 7 and under Wine, which do not know the information class)."""
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    info = cpu_rate_struct(rate)
    ok = kernel32.SetInformationJobObject(
        ctypes.c_void_p(int(job)),
        JOB_OBJECT_CPU_RATE_CONTROL_INFORMATION_CLASS,
        ctypes.byref(info),
        ctypes.sizeof(info),
    )
    return 0 if ok else ctypes.get_last_error()  # type: ignore[attr-defined]


def query_cpu_rate(job: Any) -> tuple[int, int] | None:
    """(ControlFlags, CpuRate) as Windows holds them, or None if it cannot say."""
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    info = CpuRateControl()
    returned = ctypes.c_uint32()
    ok = kernel32.QueryInformationJobObject(
        ctypes.c_void_p(int(job)),
        JOB_OBJECT_CPU_RATE_CONTROL_INFORMATION_CLASS,
        ctypes.byref(info),
        ctypes.sizeof(info),
        ctypes.byref(returned),
    )
    return (info.ControlFlags, info.CpuRate) if ok else None


def query_extended_limits(job: Any) -> dict[str, Any]:
    import win32job

    return dict(win32job.QueryInformationJobObject(job, win32job.JobObjectExtendedLimitInformation))


def assign(job: Any, process_handle: Any) -> None:
    import win32job

    win32job.AssignProcessToJobObject(job, process_handle)


def process_ids(job: Any) -> list[int]:
    """Every live process in the job. psutil's children() does not work under Wine and
    misses re-parented grandchildren anyway; the job's own list is exact."""
    import win32job

    return list(win32job.QueryInformationJobObject(job, win32job.JobObjectBasicProcessIdList))


def cpu_seconds(job: Any) -> float:
    """User + kernel time of every process that ever ran in the job, exited ones too.
    (Wine reports 0 here; the caller also sums the live processes' own times.)"""
    import win32job

    acct = win32job.QueryInformationJobObject(job, win32job.JobObjectBasicAccountingInformation)
    return (acct["TotalUserTime"] + acct["TotalKernelTime"]) / 1e7  # 100 ns units


def terminate(job: Any, exit_code: int) -> None:
    import pywintypes
    import win32job

    # An error means an empty or closing job: nothing left to kill.
    with contextlib.suppress(pywintypes.error):
        win32job.TerminateJobObject(job, exit_code)
