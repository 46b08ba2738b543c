"""Windows: the node dies with its shim, inside its limits. The shim puts itself in a Job
Object with kill-on-close and the node's limits before it starts the node, which is then
born in the job; the shim holds the job's lasting handle, so when the shim ends, however
it ends, Windows closes the handle and kills every process still in the job (the node and
its children). The POSIX counterpart is the node's parent-death signal (``childsetup``).

The job is named (``JobSpec.name``) so that the keeper can open it to read the tree's
usage and to kill the tree; the keeper closes its handle when the shim's connection ends,
so the shim's stays the one that decides.

The limits apply to the shim too: a few MB of commit, which the job memory limit is
raised by, and a lower priority and the node's cores, which cost a relay nothing.

Stdlib only (ctypes), like the whole shim."""

from __future__ import annotations

import ctypes
from ctypes import wintypes

from .protocol import JobSpec

JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE = 0x00002000
JOB_OBJECT_LIMIT_BREAKAWAY_OK = 0x00000800
JOB_OBJECT_EXTENDED_LIMIT_INFORMATION_CLASS = 9
JOB_OBJECT_CPU_RATE_CONTROL_INFORMATION_CLASS = 15
JOB_OBJECT_CPU_RATE_CONTROL_ENABLE = 0x1
JOB_OBJECT_CPU_RATE_CONTROL_HARD_CAP = 0x4
CREATE_SUSPENDED = 0x00000004
PROCESS_SET_INFORMATION = 0x0200
PROCESS_QUERY_INFORMATION = 0x0400
PROCESS_VM_READ = 0x0010
PROCESS_SUSPEND_RESUME = 0x0800
PROCESS_SET_QUOTA = 0x0100
PROCESS_TERMINATE = 0x0001


class _BasicLimits(ctypes.Structure):
    _fields_ = (
        ("PerProcessUserTimeLimit", ctypes.c_int64),
        ("PerJobUserTimeLimit", ctypes.c_int64),
        ("LimitFlags", wintypes.DWORD),
        ("MinimumWorkingSetSize", ctypes.c_size_t),
        ("MaximumWorkingSetSize", ctypes.c_size_t),
        ("ActiveProcessLimit", wintypes.DWORD),
        ("Affinity", ctypes.c_size_t),
        ("PriorityClass", wintypes.DWORD),
        ("SchedulingClass", wintypes.DWORD),
    )


class _IoCounters(ctypes.Structure):
    _fields_ = tuple((name, ctypes.c_uint64) for name in (
        "ReadOperationCount", "WriteOperationCount", "OtherOperationCount",
        "ReadTransferCount", "WriteTransferCount", "OtherTransferCount",
    ))  # fmt: skip


class _ExtendedLimits(ctypes.Structure):
    _fields_ = (
        ("BasicLimitInformation", _BasicLimits),
        ("IoInfo", _IoCounters),
        ("ProcessMemoryLimit", ctypes.c_size_t),
        ("JobMemoryLimit", ctypes.c_size_t),
        ("PeakProcessMemoryUsed", ctypes.c_size_t),
        ("PeakJobMemoryUsed", ctypes.c_size_t),
    )


class _CpuRateControl(ctypes.Structure):
    _fields_ = (("ControlFlags", wintypes.DWORD), ("CpuRate", wintypes.DWORD))


class _MemoryCounters(ctypes.Structure):
    """PROCESS_MEMORY_COUNTERS_EX (psapi.h)."""

    _fields_ = (
        ("cb", wintypes.DWORD),
        ("PageFaultCount", wintypes.DWORD),
        *((name, ctypes.c_size_t) for name in (
            "PeakWorkingSetSize", "WorkingSetSize", "QuotaPeakPagedPoolUsage",
            "QuotaPagedPoolUsage", "QuotaPeakNonPagedPoolUsage", "QuotaNonPagedPoolUsage",
            "PagefileUsage", "PeakPagefileUsage", "PrivateUsage",
        )),
    )  # fmt: skip


def _kernel32() -> ctypes.WinDLL:  # type: ignore[name-defined]
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    kernel32.CreateJobObjectW.restype = wintypes.HANDLE
    kernel32.GetCurrentProcess.restype = wintypes.HANDLE
    kernel32.OpenProcess.restype = wintypes.HANDLE
    return kernel32


def _error() -> OSError:
    return ctypes.WinError(ctypes.get_last_error())  # type: ignore[attr-defined,no-any-return]


def own_commit() -> int:
    """This process's private bytes (Wine fills only PagefileUsage: the larger of the two)."""
    kernel32 = _kernel32()
    counters = _MemoryCounters()
    counters.cb = ctypes.sizeof(counters)
    if not kernel32.K32GetProcessMemoryInfo(
        wintypes.HANDLE(kernel32.GetCurrentProcess()), ctypes.byref(counters), counters.cb
    ):
        return 0
    return max(counters.PrivateUsage, counters.PagefileUsage)


# Head room on the job memory limit for the shim's own commit as it runs (its threads'
# stacks, one keeper connection's buffers) beyond what it had at start.
SHIM_COMMIT_MARGIN = 16 * 1024 * 1024


def _create_job(kernel32: ctypes.WinDLL, name: str, info: _ExtendedLimits) -> int:  # type: ignore[name-defined]
    """A new job (named unless ``name`` is empty) with ``info`` set; OSError if refused."""
    job = kernel32.CreateJobObjectW(None, name or None)
    if not job:
        raise _error()
    if not kernel32.SetInformationJobObject(
        wintypes.HANDLE(job), JOB_OBJECT_EXTENDED_LIMIT_INFORMATION_CLASS, ctypes.byref(info),
        ctypes.sizeof(info),
    ):  # fmt: skip
        error = _error()
        kernel32.CloseHandle(wintypes.HANDLE(job))
        raise error
    return int(job)


def keeper_job() -> int:
    """The launcher's job for its keepers: kill-on-close, so that no keeper outlives the
    launcher (the service) however it ends, and breakaway allowed, so that the node shims
    a keeper starts leave it (``CREATE_BREAKAWAY_FROM_JOB``): a shim must outlive its
    keeper, and it stops its node itself when the launcher is gone. The handle stays open
    for the launcher's life."""
    info = _ExtendedLimits()
    info.BasicLimitInformation.LimitFlags = (
        JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE | JOB_OBJECT_LIMIT_BREAKAWAY_OK
    )
    return _create_job(_kernel32(), "", info)


def assign_and_resume(job: int, pid: int) -> None:
    """Put a process started suspended into ``job``, then let it run. OSError if either
    fails: the caller kills the process rather than run it outside the job."""
    kernel32 = _kernel32()
    access = PROCESS_SET_QUOTA | PROCESS_TERMINATE | PROCESS_SUSPEND_RESUME
    process = kernel32.OpenProcess(access, False, pid)
    if not process:
        raise _error()
    handle = wintypes.HANDLE(process)
    try:
        if not kernel32.AssignProcessToJobObject(wintypes.HANDLE(job), handle):
            raise _error()
        _resume(handle)
    finally:
        kernel32.CloseHandle(handle)


def resume_pid(pid: int) -> None:
    """Let a process started suspended run (when it could not be put in a job)."""
    kernel32 = _kernel32()
    process = kernel32.OpenProcess(PROCESS_SUSPEND_RESUME, False, pid)
    if not process:
        raise _error()
    try:
        _resume(wintypes.HANDLE(process))
    finally:
        kernel32.CloseHandle(wintypes.HANDLE(process))


def _resume(handle: wintypes.HANDLE) -> None:
    # subprocess closes the primary thread's handle, so ResumeThread is out of reach;
    # NtResumeProcess resumes every thread of the process.
    status = ctypes.WinDLL("ntdll").NtResumeProcess(handle)  # type: ignore[attr-defined]
    if status != 0:
        raise OSError(f"NtResumeProcess failed with NTSTATUS {status & 0xFFFFFFFF:#010x}")


def hold_node_job(spec: JobSpec | None) -> tuple[int, int]:
    """Put this process in a new kill-on-close job carrying ``spec``'s limits. Returns the
    job's handle, which must stay open for the life of the process, and 0 or the Windows
    error that refused the CPU rate cap (87 on Windows 7 and Wine, which lack the class).
    OSError if Windows refuses the job itself."""
    spec = spec or JobSpec(name="")
    kernel32 = _kernel32()
    info = _ExtendedLimits()
    basic = info.BasicLimitInformation
    basic.LimitFlags = spec.limit_flags | JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
    basic.Affinity = spec.affinity
    basic.PriorityClass = spec.priority_class
    info.ProcessMemoryLimit = spec.process_memory
    if spec.job_memory:
        info.JobMemoryLimit = spec.job_memory + own_commit() + SHIM_COMMIT_MARGIN
    job = _create_job(kernel32, spec.name, info)
    handle = wintypes.HANDLE(job)
    cpu_rate_error = 0
    if spec.cpu_rate is not None:
        rate = _CpuRateControl(
            JOB_OBJECT_CPU_RATE_CONTROL_ENABLE | JOB_OBJECT_CPU_RATE_CONTROL_HARD_CAP, spec.cpu_rate
        )
        if not kernel32.SetInformationJobObject(
            handle, JOB_OBJECT_CPU_RATE_CONTROL_INFORMATION_CLASS, ctypes.byref(rate),
            ctypes.sizeof(rate),
        ):  # fmt: skip
            cpu_rate_error = ctypes.get_last_error()  # type: ignore[attr-defined]
    if not kernel32.AssignProcessToJobObject(handle, wintypes.HANDLE(kernel32.GetCurrentProcess())):
        error = _error()
        kernel32.CloseHandle(handle)
        raise error
    return int(job), cpu_rate_error


def set_and_resume(pid: int, spec: JobSpec | None) -> None:
    """The node was created suspended (``CREATE_SUSPENDED``): its affinity and priority
    class set on the process itself too (identical on Windows, where the job already
    imposes them; visible under Wine, which stores no job limits), then resumed.
    OSError if any step fails: the caller kills the node rather than run it unlimited."""
    kernel32 = _kernel32()
    access = (
        PROCESS_SET_INFORMATION | PROCESS_QUERY_INFORMATION | PROCESS_VM_READ
        | PROCESS_SUSPEND_RESUME
    )  # fmt: skip
    process = kernel32.OpenProcess(access, False, pid)
    if not process:
        raise _error()
    handle = wintypes.HANDLE(process)
    try:
        affinity = spec.affinity if spec else 0
        if affinity and not kernel32.SetProcessAffinityMask(handle, ctypes.c_size_t(affinity)):
            raise _error()
        priority = spec.priority_class if spec else 0
        if priority and not kernel32.SetPriorityClass(handle, priority):
            raise _error()
        _resume(handle)
    finally:
        kernel32.CloseHandle(handle)
