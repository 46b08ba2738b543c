"""The keeper as the launcher's child process: start, notice its exit, stop, kill.

Portable by construction, one branch per OS where they differ:

- **Dies with the launcher.** Linux: ``PR_SET_PDEATHSIG(SIGKILL)`` before exec, the
  same rule the keeper applies to the node
  (docs/decisions/011-keeper-killed-node-dies-with-it.md). Windows: the keeper starts
  suspended and is put in the launcher's kill-on-close Job Object before it runs
  (``nodeshim.winjob.keeper_job``); the node shims it starts break away from that job and
  watch the launcher themselves (decision 063).
- **Own process group / session**, so a Ctrl-C at a terminal reaches only the launcher,
  which then stops the keeper once, in order.
- **Graceful stop.** POSIX: SIGTERM. Windows: a named event the keeper waits on
  (``ENV_STOP_EVENT``; ``selfupdate.entry`` turns it into the keeper's SIGINT stop), and
  CTRL_BREAK to its process group as well for keepers older than the event: that one
  needs a console shared with the keeper, so a launcher without one (a service)
  allocates one first. Both sent through the Win32 calls themselves, never ``os.kill``,
  which falls back to TerminateProcess when the event cannot be sent. After ``timeout``
  the keeper is killed.

Its exit is seen by a thread blocked in ``wait()`` that sets ``on_exit``, so the launcher
sleeps until something happens instead of polling.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import itertools
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .protocol import ENV_STOP_EVENT

PR_SET_PDEATHSIG = 1
log = logging.getLogger("nodekeeper.launcher")


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


CREATE_SUSPENDED = 0x00000004
CTRL_BREAK_EVENT = 1
_stop_events = itertools.count()


def _popen_options() -> dict[str, Any]:
    if os.name == "nt":
        _ensure_console()
        # No CREATE_NO_WINDOW: the keeper must share the launcher's console (see above).
        # Suspended: it runs only once it is in the launcher's job (``_into_job``).
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | CREATE_SUSPENDED}
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
        env = dict(env)
        self._stop_event: _WindowsEvent | None = None
        if os.name == "nt":
            self._stop_event = _WindowsEvent(f"nodekeeper-stop-{os.getpid()}-{next(_stop_events)}")
            env[ENV_STOP_EVENT] = self._stop_event.name
        self.proc = subprocess.Popen(
            self.argv, env=env, stdin=subprocess.DEVNULL, **_popen_options()
        )
        if os.name == "nt":
            _into_job(self.proc)
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
        if self._stop_event is not None:  # one per keeper start: never left open
            self._stop_event.close()
        self.exited.set()
        self._on_exit()

    def stop(self, timeout: float) -> int:
        """Ask it to stop, kill it after ``timeout``; returns its exit code."""
        if not self.exited.is_set():
            with contextlib.suppress(OSError):
                if self._stop_event is not None:
                    self._stop_event.set()
                    _send_break(self.proc.pid)
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


@functools.cache
def _keeper_job() -> int | None:
    """The one job all this launcher's keepers run in (made once); None if Windows
    refuses it, which is logged: the keeper then runs, but would outlive the launcher."""
    from nodekeeper.nodeshim import winjob

    try:
        return winjob.keeper_job()
    except OSError as exc:
        log.warning("no Job Object for the keeper (%s): it would outlive the launcher", exc)
        return None


def _into_job(proc: subprocess.Popen[bytes]) -> None:
    """Put the suspended keeper in the launcher's job and let it run; a keeper that cannot
    run is killed, and its start fails (OSError)."""
    from nodekeeper.nodeshim import winjob

    job = _keeper_job()
    try:
        if job is not None:
            try:
                winjob.assign_and_resume(job, proc.pid)
                return
            except OSError as exc:
                log.warning("keeper (pid %d) not in the launcher's job: %s", proc.pid, exc)
        winjob.resume_pid(proc.pid)
    except OSError:
        proc.kill()
        proc.wait()
        raise


class _WindowsEvent:
    """A named manual-reset event, created unset; the keeper opens it by name."""

    def __init__(self, name: str) -> None:
        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
        kernel32.CreateEventW.restype = ctypes.c_void_p
        self.name = name
        self._kernel32 = kernel32
        self._lock = threading.Lock()
        self.handle = kernel32.CreateEventW(None, True, False, name)
        if not self.handle:
            raise ctypes.WinError(ctypes.get_last_error())  # type: ignore[attr-defined]

    def set(self) -> None:
        with self._lock:  # never on a closed handle, whose value Windows may reuse
            if self.handle:
                self._kernel32.SetEvent(ctypes.c_void_p(self.handle))

    def close(self) -> None:
        with self._lock:
            handle, self.handle = self.handle, None
        if handle:
            self._kernel32.CloseHandle(ctypes.c_void_p(handle))


def _send_break(pid: int) -> None:
    """CTRL_BREAK to the keeper's process group, for a keeper that predates the stop
    event; GenerateConsoleCtrlEvent itself, because os.kill would terminate instead
    when the event cannot be sent."""
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    kernel32.GenerateConsoleCtrlEvent(CTRL_BREAK_EVENT, pid)
