"""Single-process Win32 calls the Windows platform needs: open, resume, measure, kill.

pywin32 covers most of it; ctypes fills the gaps (NtResumeProcess, and the
PROCESS_MEMORY_COUNTERS_EX fields pywin32 leaves out). Imported only on Windows.
"""

from __future__ import annotations

import contextlib
import ctypes
import struct
from typing import Any

import pywintypes
import win32api
import win32con
import win32process

# Enough to put a suspended process in a job, set its limits, resume and measure it.
CONTROL_ACCESS = (
    win32con.PROCESS_SET_QUOTA
    | win32con.PROCESS_TERMINATE
    | win32con.PROCESS_SET_INFORMATION
    | win32con.PROCESS_QUERY_INFORMATION
    | win32con.PROCESS_VM_READ
    | win32con.PROCESS_SUSPEND_RESUME
    | win32con.SYNCHRONIZE
)
QUERY_ACCESS = win32con.PROCESS_QUERY_INFORMATION | win32con.PROCESS_VM_READ
STILL_ACTIVE = 259
SYSTEM_PROCESS_INFORMATION = 5
STATUS_INFO_LENGTH_MISMATCH = 0xC0000004


class _MemoryCounters(ctypes.Structure):
    """PROCESS_MEMORY_COUNTERS_EX (psapi.h)."""

    _fields_ = (
        ("cb", ctypes.c_uint32),
        ("PageFaultCount", ctypes.c_uint32),
        ("PeakWorkingSetSize", ctypes.c_size_t),
        ("WorkingSetSize", ctypes.c_size_t),
        ("QuotaPeakPagedPoolUsage", ctypes.c_size_t),
        ("QuotaPagedPoolUsage", ctypes.c_size_t),
        ("QuotaPeakNonPagedPoolUsage", ctypes.c_size_t),
        ("QuotaNonPagedPoolUsage", ctypes.c_size_t),
        ("PagefileUsage", ctypes.c_size_t),
        ("PeakPagefileUsage", ctypes.c_size_t),
        ("PrivateUsage", ctypes.c_size_t),
    )


_kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
_ntdll = ctypes.WinDLL("ntdll")  # type: ignore[attr-defined]
_ntdll.NtQuerySystemInformation.argtypes = (
    ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.POINTER(ctypes.c_ulong),
)  # fmt: skip
_ntdll.NtQuerySystemInformation.restype = ctypes.c_long


def open_process(pid: int, access: int = CONTROL_ACCESS) -> Any:
    return win32api.OpenProcess(access, False, pid)


def resume(handle: Any) -> None:
    """Resumes a process started with CREATE_SUSPENDED. subprocess closes the primary
    thread's handle, so ResumeThread is out of reach; NtResumeProcess resumes every thread
    of the process (ntdll export since XP, used by Process Explorer and psutil)."""
    status = _ntdll.NtResumeProcess(ctypes.c_void_p(int(handle)))
    if status != 0:
        raise OSError(f"NtResumeProcess failed with NTSTATUS {status & 0xFFFFFFFF:#010x}")


def private_bytes(handle: Any) -> int:
    """The process's commit charge ("private bytes"), what Task Manager calls Commit size.

    Windows reports it twice, as PrivateUsage and PagefileUsage (the same counter since
    Windows 7). Wine fills only PagefileUsage, and psutil's memory_info().private is a
    constant there, so the larger of the two is read directly.
    """
    counters = _MemoryCounters()
    counters.cb = ctypes.sizeof(counters)
    ok = _kernel32.K32GetProcessMemoryInfo(
        ctypes.c_void_p(int(handle)), ctypes.byref(counters), counters.cb
    )
    if not ok:
        raise ctypes.WinError(ctypes.get_last_error())  # type: ignore[attr-defined]
    return max(counters.PrivateUsage, counters.PagefileUsage)


def cpu_seconds_by_pid() -> dict[int, float]:
    """User + kernel CPU seconds of every process, from one system-wide snapshot.

    NtQuerySystemInformation(SystemProcessInformation) is what Task Manager reads. It is
    used instead of GetProcessTimes because, under Wine, GetProcessTimes of another
    process stops counting after its first moments, while this snapshot stays live; on
    Windows both agree. One call also covers every process of the tree at once.
    """
    size = 1 << 18
    while True:
        buffer = ctypes.create_string_buffer(size)
        needed = ctypes.c_ulong()
        status = (
            _ntdll.NtQuerySystemInformation(
                SYSTEM_PROCESS_INFORMATION, buffer, size, ctypes.byref(needed)
            )
            & 0xFFFFFFFF
        )
        if status == STATUS_INFO_LENGTH_MISMATCH:  # more processes than room: grow, retry
            size = max(size * 2, needed.value + 65536)
            continue
        if status != 0:
            raise OSError(f"NtQuerySystemInformation failed with NTSTATUS {status:#010x}")
        break
    found: dict[int, float] = {}
    offset = 0
    while True:
        # SYSTEM_PROCESS_INFORMATION (x64): NextEntryOffset at 0, UserTime and KernelTime
        # (100 ns units) at 40 and 48, UniqueProcessId at 80.
        (next_entry,) = struct.unpack_from("<I", buffer, offset)
        user, kernel = struct.unpack_from("<qq", buffer, offset + 40)
        (pid,) = struct.unpack_from("<Q", buffer, offset + 80)
        found[pid] = (user + kernel) / 1e7
        if next_entry == 0:
            return found
        offset += next_entry


def creation_time(handle: Any) -> float:
    """Creation time in seconds since the epoch: with the pid, it names one process."""
    return float(win32process.GetProcessTimes(handle)["CreationTime"].timestamp())


def is_running(handle: Any) -> bool:
    return bool(win32process.GetExitCodeProcess(handle) == STILL_ACTIVE)


def terminate(handle: Any, exit_code: int) -> None:
    with contextlib.suppress(pywintypes.error):  # already exited
        win32process.TerminateProcess(handle, exit_code)


def private_bytes_of(pid: int) -> int | None:
    """Private bytes of one process, or None when it is gone or not ours to read."""
    try:
        handle = open_process(pid, QUERY_ACCESS)
    except pywintypes.error:
        return None
    try:
        return private_bytes(handle)
    except OSError:
        return None
    finally:
        handle.Close()
