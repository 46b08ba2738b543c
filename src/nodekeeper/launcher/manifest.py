"""The command line of an installed keeper version, from its ``nodekeeper-artifact.json``.

A deliberately small reader of the artifact format (docs/decisions/003-artifact-format.md): the
launcher must not import ``nodekeeper.version`` (it pulls in semver, and is code that
changes with keeper releases). It reads exactly what it needs to start a keeper and
refuses everything else; the tests check it agrees with ``nodekeeper.version.manifest``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

from .protocol import PROCESS

MANIFEST_NAME = "nodekeeper-artifact.json"
# The runtime ships with this launcher, so it names the new entry; a launcher started
# before an upgrade still names ``nodekeeper.launched``, which stays as a shim.
RUNTIME_ENTRY = "nodekeeper.selfupdate.entry"
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
# Same as nodekeeper.version.manifest.PYTHON_BOOTSTRAP (a test keeps them equal): the
# install dir first on sys.path, so the release's package wins over the runtime's copy.
PYTHON_BOOTSTRAP = (
    "import runpy, sys; d, m = sys.argv[1], sys.argv[2]; sys.path.insert(0, d); "
    "sys.argv = [m] + sys.argv[3:]; runpy.run_module(m, run_name='__main__', alter_sys=True)"
)


class UnusableInstall(Exception):
    """This version cannot be started; the message says why."""


def _same_version(a: str, b: str) -> bool:
    return a.strip().lstrip("vV") == b.strip().lstrip("vV")


def keeper_argv(install_dir: Path, version: str, python: str, args: Sequence[str]) -> list[str]:
    """The argv that runs keeper ``version`` installed in ``install_dir``."""
    path = install_dir / MANIFEST_NAME
    try:
        raw = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise UnusableInstall(f"{path} is missing (not installed, or not a keeper)") from None
    except (OSError, ValueError) as exc:
        raise UnusableInstall(f"cannot read {path}: {exc}") from None
    if not isinstance(raw, dict) or raw.get("format") != 1:
        raise UnusableInstall(f"{path}: not a format-1 manifest")
    if raw.get("process") != PROCESS:
        raise UnusableInstall(f"{path}: process is {raw.get('process')!r}, not {PROCESS!r}")
    if not isinstance(raw.get("version"), str) or not _same_version(raw["version"], version):
        raise UnusableInstall(f"{path}: version is {raw.get('version')!r}, not {version!r}")
    run = raw.get("run")
    kind = run.get("kind") if isinstance(run, dict) else None
    if kind == "python" and isinstance(run.get("module"), str) and _MODULE.match(run["module"]):
        return [python, "-I", "-c", PYTHON_BOOTSTRAP, str(install_dir), run["module"], *args]
    if kind == "executable" and isinstance(run.get("path"), str):
        rel = run["path"].replace("\\", "/")
        if rel.startswith("/") or ".." in rel.split("/") or re.match(r"^[A-Za-z]:", rel):
            raise UnusableInstall(f"{path}: run.path {rel!r} leaves the install dir")
        exe = install_dir.joinpath(*rel.split("/"))
        if not exe.is_file():
            raise UnusableInstall(f"{path}: {exe} is missing")
        return [os.fspath(exe), *args]
    raise UnusableInstall(f"{path}: run {run!r} is not one this launcher can start")


def runtime_argv(python: str, args: Sequence[str]) -> list[str]:
    """The runtime's own keeper (site-packages), the floor under every release."""
    return [python, "-I", "-m", RUNTIME_ENTRY, *args]
