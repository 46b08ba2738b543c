"""Preflight: run the installed artifact's ``version`` command before anything depends on it.

This runs while the old node is still serving. It proves the new install can start at
all on this machine (interpreter, imports, the execute bit, antivirus quarantine...) and
that it is the announced version, so a release that cannot even say its version never
costs the node a stop. ``Version: X.Y.Z`` is what ``storagenode version`` (ours and
Storj's) prints; the first such line counts.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Sequence

from nodekeeper.version.manifest import run_argv
from nodekeeper.version.versions import InvalidVersionError, normalize_version

from .errors import PreflightFailed
from .unpack import Installed

DEFAULT_TIMEOUT = 30.0
_VERSION_LINE = re.compile(r"^\s*Version:\s*(\S+)\s*$", re.MULTILINE)
# What is kept of the output for the error message and report: enough to see the
# traceback's last lines, never the whole of a program that prints endlessly.
_OUTPUT_TAIL = 2000


def parse_version_output(output: str) -> str | None:
    """The normalised version in the first ``Version: X.Y.Z`` line, else None (pure)."""
    match = _VERSION_LINE.search(output)
    if match is None:
        return None
    try:
        return normalize_version(match.group(1))
    except InvalidVersionError:
        return None


def check_version_output(output: str, expected: str) -> str:
    """The printed version if it is ``expected``; PreflightFailed otherwise (pure)."""
    printed = parse_version_output(output)
    if printed is None:
        raise PreflightFailed(
            "the new version printed no `Version: X.Y.Z` line", output=_tail(output)
        )
    if printed != normalize_version(expected):
        raise PreflightFailed(
            f"the new version says it is {printed}, but {normalize_version(expected)} was "
            "announced",
            exit_code=0,
            output=_tail(output),
        )
    return printed


def preflight(
    installed: Installed,
    expected_version: str,
    *,
    python: str = sys.executable,
    timeout: float = DEFAULT_TIMEOUT,
    args: Sequence[str] = ("version",),
) -> str:
    """Run ``<artifact> version`` from its install dir; returns the version it printed.

    Raises PreflightFailed when it cannot start, exits non-zero, runs past ``timeout``
    (its whole process group is killed), or prints another version.
    """
    argv = run_argv(installed.manifest, str(installed.path), python, list(args))
    try:
        proc = subprocess.Popen(
            argv,
            cwd=installed.path,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            **_own_group(),
        )
    except OSError as exc:
        raise PreflightFailed(
            f"cannot start the new version ({argv[0]}): {exc.strerror or exc}"
        ) from None
    try:
        raw, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        try:
            raw, _ = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:  # a descendant left the group and holds stdout
            raw = b""
        raise PreflightFailed(
            f"`{installed.process} version` did not finish within {timeout:g} s",
            output=_tail(raw.decode("utf-8", "replace")),
        ) from None
    output = raw.decode("utf-8", "replace")
    if proc.returncode != 0:
        raise PreflightFailed(
            f"`{installed.process} version` exited with code {proc.returncode}",
            exit_code=proc.returncode,
            output=_tail(output),
        )
    return check_version_output(output, expected_version)


def _tail(text: str) -> str:
    return text[-_OUTPUT_TAIL:]


def _own_group() -> dict[str, object]:
    """Its own process group, so a timeout kills whatever it started too; no console
    window on Windows (the keeper is a service)."""
    if os.name == "nt":
        flags = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW
        return {"creationflags": flags}
    return {"start_new_session": True}


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    if os.name == "nt":
        proc.kill()
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
