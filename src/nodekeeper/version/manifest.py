"""The keeper's artifact format: what is inside a release zip and how to run it (pure).

An artifact is a zip. Either it carries ``nodekeeper-artifact.json``::

    {"format": 1, "process": "storagenode", "version": "1.2.3",
     "run": {"kind": "python", "module": "storagenode"}}

(``run`` may instead be ``{"kind": "executable", "path": "bin/storagenode"}``), or it
holds exactly one file named ``NAME`` or ``NAME.exe`` and nothing else, Storj's own
release format, so a native node binary can be managed too; its version is then learnt by
running ``NAME version``.

A ``python`` artifact runs on the runtime's interpreter with the install dir first on
``sys.path``; it may import the runtime's packages. Unknown keys are ignored so that an
older keeper can still run an artifact that carries newer, optional information; a
``format`` or ``run.kind`` this code does not know is refused.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .versions import InvalidVersionError, normalize_version

MANIFEST_NAME = "nodekeeper-artifact.json"
FORMAT = 1
PROCESS_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")

# Runs a module from the install dir. The install dir goes first on sys.path so that the
# artifact's own package wins over any copy installed in the runtime. -I keeps the
# operator's environment (PYTHONPATH, user site-packages) out of the node; the runtime's
# site-packages still load. The dir and module are argv items, not code, so no quoting.
PYTHON_BOOTSTRAP = (
    "import runpy, sys; d, m = sys.argv[1], sys.argv[2]; sys.path.insert(0, d); "
    "sys.argv = [m] + sys.argv[3:]; runpy.run_module(m, run_name='__main__', alter_sys=True)"
)


class InvalidArtifactError(ValueError):
    """The artifact or its manifest cannot be used; the message says why."""


@dataclass(frozen=True)
class PythonRun:
    module: str
    kind: str = "python"


@dataclass(frozen=True)
class ExecutableRun:
    path: str  # relative, "/"-separated, inside the install dir
    kind: str = "executable"


@dataclass(frozen=True)
class ArtifactManifest:
    process: str
    version: str | None  # None: a bare executable; ask it with `version`
    run: PythonRun | ExecutableRun
    format: int = FORMAT

    def to_json(self) -> dict[str, Any]:
        run: dict[str, str] = (
            {"kind": "python", "module": self.run.module}
            if isinstance(self.run, PythonRun)
            else {"kind": "executable", "path": self.run.path}
        )
        return {"format": self.format, "process": self.process, "version": self.version, "run": run}


def render_manifest(manifest: ArtifactManifest) -> bytes:
    return (json.dumps(manifest.to_json(), indent=2, sort_keys=True) + "\n").encode("utf-8")


def check_member_name(name: str) -> str:
    """A zip entry name that stays inside the install dir (no zip-slip)."""
    clean = name.replace("\\", "/")
    if (
        not clean
        or clean.startswith("/")
        or re.match(r"^[A-Za-z]:", clean)
        or ".." in clean.split("/")
        or "\x00" in clean
    ):
        raise InvalidArtifactError(f"zip entry {name!r} would land outside the install dir")
    return clean


def parse_manifest(data: bytes | str) -> ArtifactManifest:
    """Validate ``nodekeeper-artifact.json``."""
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArtifactError(f"{MANIFEST_NAME} is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise InvalidArtifactError(f"{MANIFEST_NAME} must be a JSON object")
    fmt = raw.get("format")
    if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt < 1:
        raise InvalidArtifactError(f"{MANIFEST_NAME}: format must be a positive integer")
    if fmt > FORMAT:
        raise InvalidArtifactError(
            f"{MANIFEST_NAME} has format {fmt}; this keeper reads format {FORMAT}: update it"
        )
    process = raw.get("process")
    if not isinstance(process, str) or not PROCESS_NAME.match(process):
        raise InvalidArtifactError(
            f"{MANIFEST_NAME}: process must be a lowercase name like storagenode"
        )
    version = raw.get("version")
    if not isinstance(version, str):
        raise InvalidArtifactError(f"{MANIFEST_NAME}: version must be a string like 1.2.3")
    try:
        version = normalize_version(version)
    except InvalidVersionError as exc:
        raise InvalidArtifactError(f"{MANIFEST_NAME}: {exc}") from None
    return ArtifactManifest(process=process, version=version, run=_parse_run(raw.get("run")))


def _parse_run(run: Any) -> PythonRun | ExecutableRun:
    if not isinstance(run, dict):
        raise InvalidArtifactError(f"{MANIFEST_NAME}: run must be an object with a kind")
    kind = run.get("kind")
    if kind == "python":
        module = run.get("module")
        if not isinstance(module, str) or not MODULE_NAME.match(module):
            raise InvalidArtifactError(
                f"{MANIFEST_NAME}: run.module must be a module name like storagenode"
            )
        return PythonRun(module)
    if kind == "executable":
        path = run.get("path")
        if not isinstance(path, str):
            raise InvalidArtifactError(f"{MANIFEST_NAME}: run.path must be a relative path")
        clean = posixpath.normpath(check_member_name(path))
        if clean in (".", ""):
            raise InvalidArtifactError(f"{MANIFEST_NAME}: run.path must name a file")
        return ExecutableRun(clean)
    raise InvalidArtifactError(
        f"{MANIFEST_NAME}: run.kind {kind!r} is unknown; this keeper runs 'python' and "
        "'executable' artifacts: update it"
    )


def manifest_for_zip(names: Sequence[str], manifest_data: bytes | None) -> ArtifactManifest:
    """Describe a zip from its entry names and, if it has one, its manifest's bytes.

    The caller reads the zip (I/O stays out of this module); ``manifest_data`` must be the
    content of MANIFEST_NAME when that name is among ``names``.
    """
    files = [check_member_name(n) for n in names if not n.endswith(("/", "\\"))]
    if MANIFEST_NAME in files:
        if manifest_data is None:
            raise InvalidArtifactError(f"the zip has {MANIFEST_NAME}: pass its content")
        manifest = parse_manifest(manifest_data)
        if isinstance(manifest.run, ExecutableRun) and manifest.run.path not in files:
            raise InvalidArtifactError(
                f"{MANIFEST_NAME} runs {manifest.run.path!r}, which is not in the zip"
            )
        if isinstance(manifest.run, PythonRun):
            top = manifest.run.module.split(".")[0]
            if f"{top}.py" not in files and not any(f.startswith(f"{top}/") for f in files):
                raise InvalidArtifactError(
                    f"{MANIFEST_NAME} runs module {manifest.run.module!r}, which is not in the zip"
                )
        return manifest
    if len(files) != 1:
        raise InvalidArtifactError(
            f"the zip has no {MANIFEST_NAME} and holds {len(files)} files; without a "
            "manifest it must hold exactly one executable (e.g. storagenode.exe)"
        )
    (only,) = files
    base = posixpath.basename(only)
    process = base[:-4] if base.lower().endswith(".exe") else base
    if not PROCESS_NAME.match(process):
        raise InvalidArtifactError(
            f"the zip's only file {only!r} is not an executable named like storagenode[.exe]"
        )
    return ArtifactManifest(process=process, version=None, run=ExecutableRun(only))


def check_release_identity(manifest: ArtifactManifest, process: str, version: str) -> None:
    """The artifact is the release it is published or announced as (pure). A bare
    executable carries no version in its zip; only running it can tell."""
    if manifest.process != process:
        raise InvalidArtifactError(
            f"the artifact is for process {manifest.process!r}, not {process!r}"
        )
    wanted = normalize_version(version)
    if manifest.version is not None and manifest.version != wanted:
        raise InvalidArtifactError(
            f"the artifact says it is {manifest.process} {manifest.version}, not {wanted}"
        )


def run_argv(
    manifest: ArtifactManifest,
    install_dir: str,
    python: str,
    args: Sequence[str] = (),
    *,
    sep: str = os.sep,
) -> list[str]:
    """The command line that runs the installed artifact with ``args`` (e.g. ``["run",
    "--config-dir", D]``). ``sep`` is the target OS's path separator."""
    if isinstance(manifest.run, PythonRun):
        return [python, "-I", "-c", PYTHON_BOOTSTRAP, install_dir, manifest.run.module, *args]
    base = install_dir.rstrip("/\\")
    return [base + sep + manifest.run.path.replace("/", sep), *args]
