"""Waiting for the anchor process (the launcher) to end, without polling where the OS can
say so: a pidfd on Linux (5.3+), the process handle on Windows; elsewhere a check every
second."""

from __future__ import annotations

import os
import select
import threading
import time


def wait_for_exit(pid: int, stop: threading.Event) -> bool:
    """Block until process ``pid`` has ended (True) or ``stop`` is set (False).

    A pid that does not exist at the start counts as ended: the shim must not run a node
    for a launcher that is already gone."""
    if os.name == "nt":
        return _wait_windows(pid, stop)
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    except (AttributeError, OSError):
        return _wait_polling(pid, stop)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while not stop.is_set():
            if poller.poll(1000):  # readable = ended; the timeout only rechecks ``stop``
                return True
        return False
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait_polling(pid: int, stop: threading.Event) -> bool:
    while not stop.is_set():
        if not _alive(pid):
            return True
        time.sleep(1.0)
    return False


def _wait_windows(pid: int, stop: threading.Event) -> bool:
    import ctypes

    synchronize, wait_object_0, wait_failed = 0x00100000, 0, 0xFFFFFFFF
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    handle = kernel32.OpenProcess(synchronize, False, pid)
    if not handle:
        return True  # gone (or never ours to watch)
    try:
        while not stop.is_set():
            result = kernel32.WaitForSingleObject(handle, 1000)
            if result in (wait_object_0, wait_failed):
                return True
        return False
    finally:
        kernel32.CloseHandle(handle)
