"""The graceful stop on Windows: CTRL_BREAK_EVENT to the node's process group.

Windows has no SIGTERM. The console control event CTRL_BREAK_EVENT is what a console
program (Go's os/signal maps it to os.Interrupt, Python to SIGBREAK) treats as "please
stop", and GenerateConsoleCtrlEvent can aim it at one process group, the one that
CREATE_NEW_PROCESS_GROUP gave the node. (CTRL_C_EVENT cannot be aimed: a new process group
starts with Ctrl+C ignored.)

The catch: GenerateConsoleCtrlEvent only reaches processes attached to the caller's own
console. A keeper started from a terminal has one and the node inherits it. A keeper
running as a service has none, and a console program it starts would get a console of its
own, out of reach. So before the first start, a keeper without a console allocates one
(``ensure_console``); in session 0 it is never shown, and the node inherits it. Were that
ever to fail, ``send_break`` reports False and the supervisor falls back to the node's
shutdown endpoint or, after the stop timeout, the tree kill.

(NSSM does it differently: it attaches to the child's console for the moment it sends
the event. That races with a second node being started at the same time; one shared
console does not.)

Under Wine 8 none of this can be shown: its console server implements only
CTRL_C_EVENT, and GenerateConsoleCtrlEvent(CTRL_BREAK_EVENT) fails there.
"""

from __future__ import annotations

import ctypes

CTRL_BREAK_EVENT = 1
CTRL_LOGOFF_EVENT = 5

_kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
_HandlerRoutine = ctypes.WINFUNCTYPE(ctypes.c_int, ctypes.c_uint32)  # type: ignore[attr-defined]


@_HandlerRoutine
def _ignore_logoff(event: int) -> int:
    return 1 if event == CTRL_LOGOFF_EVENT else 0  # 0: the next handler decides


def has_console() -> bool:
    """True when this process is attached to a console that can deliver control events."""
    pids = (ctypes.c_uint32 * 4)()
    return bool(_kernel32.GetConsoleProcessList(pids, len(pids)))


def ensure_console() -> bool:
    """Gives this process a console to share with the node, if it has none. Returns
    whether it has one afterwards."""
    if has_console():
        return True
    # Wine gives a process started with redirected stdio a placeholder that is neither a
    # console nor "none" (AllocConsole fails on it); FreeConsole drops it first. On
    # Windows it is a no-op here, since there is no console.
    _kernel32.FreeConsole()
    if not _kernel32.AllocConsole():
        return False
    # A service with a console is sent CTRL_LOGOFF_EVENT whenever any user logs off, and
    # the default handler exits the process (the reason Java services need -Xrs). The
    # keeper declines it; every other event still goes to Python's own handlers.
    _kernel32.SetConsoleCtrlHandler(_ignore_logoff, True)
    window = _kernel32.GetConsoleWindow()
    if window:
        ctypes.WinDLL("user32").ShowWindow(window, 0)  # type: ignore[attr-defined]  # SW_HIDE
    return has_console()


def send_break(process_group: int) -> tuple[bool, int]:
    """CTRL_BREAK_EVENT to one process group. Returns (sent, Windows error code)."""
    if _kernel32.GenerateConsoleCtrlEvent(CTRL_BREAK_EVENT, process_group):
        return True, 0
    return False, ctypes.get_last_error()  # type: ignore[attr-defined]
