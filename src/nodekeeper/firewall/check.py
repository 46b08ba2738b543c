"""One firewall check: probe this system within a deadline, then decide.

``run_check`` never raises and never waits past its deadline by more than a child
process takes to die: on Windows the COM probe runs as a child process
(``python -m nodekeeper.firewall.windows_probe``), on Linux each tool is one; either is
killed at the deadline. The keeper runs this in a thread of its own and the CLI runs it
directly.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from nodekeeper.firewall.decision import decide
from nodekeeper.firewall.observations import Observation, WindowsObservation
from nodekeeper.firewall.target import Target
from nodekeeper.firewall.verdict import Verdict, unknown_verdict

log = logging.getLogger("nodekeeper.firewall")
DEFAULT_TIMEOUT = 30.0
PROBE_MODULE = "nodekeeper.firewall.windows_probe"


def run_check(
    target: Target,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    system: str = sys.platform,
    clock: Callable[[], float] = time.time,
) -> Verdict:
    """The verdict for ``target`` on this system, within ``timeout`` seconds."""
    try:
        observation = observe(target, timeout, system)
        return decide(target, observation, clock())
    except Exception as exc:  # the keeper's check must never take the keeper down
        log.exception("the firewall check failed")
        return unknown_verdict(
            f"the check failed: {type(exc).__name__}: {exc}",
            port=target.port,
            program=target.program,
            checked_at=clock(),
        )


def observe(target: Target, timeout: float, system: str = sys.platform) -> Observation | None:
    """What the probes see now; None when there is nothing to probe."""
    if target.problem is not None or target.port is None:
        return None
    if system == "win32":
        return probe_windows(target.port, target.program, timeout)
    if system.startswith("linux"):
        from nodekeeper.firewall import linux_probe

        return linux_probe.observe(timeout)
    return None


def probe_windows(port: int, program: str | None, timeout: float) -> WindowsObservation:
    """The COM probe in a child process, killed at the deadline."""
    argv = [windows_python(), "-m", PROBE_MODULE, "--port", str(port)]
    if program is not None:
        argv += ["--program", program]
    flags = getattr(subprocess, "CREATE_NO_WINDOW", 0)
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            creationflags=flags,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return _failed(f"the Windows Firewall query did not answer within {timeout:g} s")
    except OSError as exc:
        return _failed(f"the Windows Firewall query could not start: {exc}")
    lines = done.stdout.decode("utf-8", "replace").strip().splitlines()
    try:
        data = json.loads(lines[-1])
        return WindowsObservation.from_dict(data)
    except (IndexError, ValueError, KeyError, TypeError):
        err = done.stderr.decode("utf-8", "replace").strip().splitlines()
        return _failed(
            f"the Windows Firewall query exited {done.returncode} without an answer"
            + (f": {err[-1]}" if err else "")
        )


def windows_python() -> str:
    """The runtime's python.exe (a service host such as pythonservice.exe is not one)."""
    exe = Path(sys.executable)
    if exe.name.lower() in ("python.exe", "pythonw.exe", "python"):
        return str(exe)
    for candidate in (
        Path(sys.exec_prefix) / "python.exe",
        Path(sys.exec_prefix) / "Scripts" / "python.exe",
    ):
        if candidate.is_file():
            return str(candidate)
    return str(exe)


def _failed(why: str) -> WindowsObservation:
    keys = ("current_profiles", "rules", "security_center")
    return WindowsObservation(errors=dict.fromkeys(keys, why))
