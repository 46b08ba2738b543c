"""Starting the node under the shim, and telling it apart from a process with a reused pid."""

from __future__ import annotations

import os
import subprocess
from typing import Any

from .childsetup import child_setup
from .protocol import ChildSetup


def popen_options(child: ChildSetup) -> dict[str, Any]:
    """The node in its own process group, dying with the shim, limits applied before exec
    (POSIX) or before it is resumed (Windows: started suspended, see ``winjob``)."""
    if os.name == "nt":
        suspended = 0x00000004  # CREATE_SUSPENDED
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | suspended}  # type: ignore[attr-defined]
    setup = child_setup(
        parent_pid=os.getpid(),
        procs_file=child.procs_file,
        rlimit_as=child.rlimit_as,
        cores=child.cores,
        nice=child.nice,
    )
    return {"start_new_session": True, "preexec_fn": setup}


def node_start_time(pid: int) -> int:
    """When ``pid`` started, in the OS's own unit (Linux: clock ticks since boot, field 22
    of /proc/PID/stat; Windows: the creation FILETIME, 100 ns since 1601); 0 where
    unknown. Equal values and equal pids: the same process."""
    if os.name == "nt":
        return _windows_creation_time(pid)
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return 0
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        return int(fields[19])  # field 22 overall; fields here start at field 3
    except (IndexError, ValueError):
        return 0


def _windows_creation_time(pid: int) -> int:
    import ctypes
    from ctypes import wintypes

    query_limited_information = 0x1000
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    kernel32.OpenProcess.restype = wintypes.HANDLE
    handle = kernel32.OpenProcess(query_limited_information, False, pid)
    if not handle:
        return 0
    try:
        times = [wintypes.FILETIME() for _ in range(4)]
        if not kernel32.GetProcessTimes(wintypes.HANDLE(handle), *(ctypes.byref(t) for t in times)):
            return 0
        created = times[0]
        return (created.dwHighDateTime << 32) | created.dwLowDateTime
    finally:
        kernel32.CloseHandle(wintypes.HANDLE(handle))
