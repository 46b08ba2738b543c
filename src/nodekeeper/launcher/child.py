"""The keeper as the launcher's child process: start, notice its exit, stop, kill.

Portable by construction, one branch per OS where they differ:

- **Dies with the launcher.** Linux: ``PR_SET_PDEATHSIG(SIGKILL)`` before exec, the
  same rule the keeper applies to the node
  (docs/decisions/011-keeper-killed-node-dies-with-it.md); the
  keeper's own death then takes the node along. Windows: the service wiring must put
  the keeper in a Job Object with kill-on-close (not done here yet).
- **Own process group / session**, so a Ctrl-C at a terminal reaches only the launcher,
  which then stops the keeper once, in order.
- **Graceful stop.** POSIX: SIGTERM. Windows: CTRL_BREAK_EVENT to its process group
  (``nodekeeper.launched`` turns SIGBREAK into the keeper's SIGINT stop). That event only
  reaches processes on the sender's console, so a launcher without one (a service)
  allocates one first, the rule ``platform/windows_console.py`` applies to the node; the
  keeper and its node inherit it. After ``timeout`` the keeper is killed.

Its exit is seen by a thread blocked in ``wait()`` that sets ``on_exit``, so the launcher
sleeps until something happens instead of polling.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    # Resolved in the parent: between fork and exec only async-signal-safe work.
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    return libc.prctl  # type: ignore[no-any-return]


_prctl = _load_prctl()


def _ensure_console() -> None:
    """Windows: a console for CTRL_BREAK to travel on (never shown in session 0)."""
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    if not kernel32.GetConsoleWindow():
        kernel32.AllocConsole()  # fails harmlessly if there is one; then kill after timeout


def _popen_options() -> dict[str, Any]:
    if os.name == "nt":
        _ensure_console()
        # No CREATE_NO_WINDOW: the keeper must share the launcher's console (see above).
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    options: dict[str, Any] = {"start_new_session": True}
    if _prctl is not None:
        parent = os.getpid()
        prctl = _prctl

        def die_with_parent() -> None:
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != parent:  # the launcher died before prctl took effect
                os._exit(1)

        options["preexec_fn"] = die_with_parent
    return options


class KeeperProcess:
    def __init__(
        self, argv: Sequence[str], env: Mapping[str, str], on_exit: Callable[[], None]
    ) -> None:
        """Start the keeper; OSError if it cannot be started at all."""
        self.argv = list(argv)
        self.proc = subprocess.Popen(
            self.argv, env=dict(env), stdin=subprocess.DEVNULL, **_popen_options()
        )
        self.exited = threading.Event()
        self._on_exit = on_exit
        threading.Thread(target=self._wait, name="keeper-wait", daemon=True).start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode if self.exited.is_set() else None

    def _wait(self) -> None:
        self.proc.wait()
        self.exited.set()
        self._on_exit()

    def stop(self, timeout: float) -> int:
        """Ask it to stop, kill it after ``timeout``; returns its exit code."""
        if not self.exited.is_set():
            with contextlib.suppress(OSError):
                if os.name == "nt":
                    os.kill(self.proc.pid, signal.CTRL_BREAK_EVENT)  # type: ignore[attr-defined]
                else:
                    self.proc.send_signal(signal.SIGTERM)
            if not self.exited.wait(timeout):
                self.kill()
        self.exited.wait()
        return self.proc.returncode

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.kill()
        self.exited.wait()
