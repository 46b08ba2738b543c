"""Keeper release builder: ``python -m nodekeeper.release --version X --out DIR``.

Writes ``DIR/nodekeeper_<version>.zip``: the ``nodekeeper`` package source with the version
baked into ``nodekeeper/__init__.py`` (``__version__``), and the manifest
``nodekeeper-artifact.json`` with process ``nodekeeper`` that runs ``nodekeeper.selfupdate.entry``
(the keeper as the launcher starts it: ``version`` for preflight, the self-update exit
code). Reproducible like the node's (:mod:`nodekeeper.artifact_zip`).

The zip carries only this package's source: the third-party packages it imports come
from the runtime (the installer's site-packages), so a keeper release that needs a new
dependency must ship with a new installer.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from nodekeeper import artifact_zip
from nodekeeper.version.manifest import ArtifactManifest, PythonRun
from nodekeeper.version.versions import normalize_version

PROCESS = "nodekeeper"
# Every launcher can start it: it runs the module the release's own manifest names, with
# the release first on sys.path (docs/decisions/045-one-self-update-package.md).
ENTRY_MODULE = "nodekeeper.selfupdate.entry"
PACKAGE_DIR = Path(__file__).resolve().parent
INIT = f"{PROCESS}/__init__.py"
_VERSION_LINE = re.compile(r'^__version__ = "[^"\n]*"$', re.MULTILINE)


def artifact_name(version: str) -> str:
    return f"{PROCESS}_{normalize_version(version)}.zip"


def bake_version(init_source: str, version: str) -> str:
    """``nodekeeper/__init__.py`` with ``__version__`` set to ``version`` (pure).

    Exactly one ``__version__ = "..."`` line must be there: a silent no-op would ship a
    keeper that reports the wrong version and updates itself again every cycle.
    """
    found = _VERSION_LINE.findall(init_source)
    if len(found) != 1:
        raise ValueError(f'{INIT} must hold exactly one `__version__ = "..."` line')
    return _VERSION_LINE.sub(f'__version__ = "{normalize_version(version)}"', init_source)


def artifact_files(
    version: str,
    module: str = ENTRY_MODULE,
    extra_files: Mapping[str, bytes] | None = None,
) -> dict[str, bytes]:
    """Everything that goes into the zip (pure apart from reading the package)."""
    version = normalize_version(version)
    files = artifact_zip.package_files(PACKAGE_DIR, PROCESS)
    files[INIT] = bake_version(files[INIT].decode("utf-8"), version).encode("utf-8")
    files.update(extra_files or {})
    manifest = ArtifactManifest(process=PROCESS, version=version, run=PythonRun(module))
    return artifact_zip.with_manifest(files, manifest)


def build_artifact(
    version: str,
    out_dir: Path,
    *,
    module: str = ENTRY_MODULE,
    extra_files: Mapping[str, bytes] | None = None,
) -> Path:
    """Build the keeper artifact for ``version`` into ``out_dir``; returns the zip's path.

    ``module`` and ``extra_files`` let a build run another entry module shipped in the
    zip (the tests make faulty keeper releases that way, with no switch in the keeper).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / artifact_name(version)
    artifact_zip.write_zip(artifact_files(version, module, extra_files), target)
    return target


def main(argv: Sequence[str] | None = None) -> int:
    return artifact_zip.release_main(
        "python -m nodekeeper.release", "nodekeeper", build_artifact, argv
    )


if __name__ == "__main__":
    sys.exit(main())
