"""Release builder: ``python -m storagenode.release --version X --out DIR``.

Writes ``DIR/storagenode_<version>.zip``: the ``storagenode`` package with the version
baked into ``buildinfo.py``, and the keeper's manifest ``nodekeeper-artifact.json``
(format in :mod:`nodekeeper.version.manifest`). The zip is byte-for-byte reproducible:
entries sorted, fixed timestamps and modes, so a rebuild has the same sha256.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from nodekeeper import artifact_zip
from nodekeeper.artifact_zip import write_zip
from nodekeeper.version.manifest import ArtifactManifest, PythonRun
from nodekeeper.version.versions import normalize_version

__all__ = [
    "artifact_files",
    "artifact_name",
    "build_artifact",
    "main",
    "package_files",
    "write_zip",
]

PROCESS = "storagenode"
PACKAGE_DIR = Path(__file__).resolve().parent


def artifact_name(version: str) -> str:
    return f"{PROCESS}_{normalize_version(version)}.zip"


def package_files() -> dict[str, bytes]:
    """The package's source files, keyed by their path in the zip."""
    return artifact_zip.package_files(PACKAGE_DIR, PROCESS)


def artifact_files(
    version: str,
    module: str = PROCESS,
    extra_files: Mapping[str, bytes] | None = None,
) -> dict[str, bytes]:
    """Everything that goes into the zip (pure apart from reading the package)."""
    version = normalize_version(version)
    files = package_files()
    files[f"{PROCESS}/buildinfo.py"] = (
        f'"""Written by the release builder."""\n\nVERSION = "{version}"\n'.encode()
    )
    files.update(extra_files or {})
    manifest = ArtifactManifest(process=PROCESS, version=version, run=PythonRun(module))
    return artifact_zip.with_manifest(files, manifest)


def build_artifact(
    version: str,
    out_dir: Path,
    *,
    module: str = PROCESS,
    extra_files: Mapping[str, bytes] | None = None,
) -> Path:
    """Build the artifact for ``version`` into ``out_dir``; returns the zip's path.

    ``module`` and ``extra_files`` let a build run a different entry module shipped in
    the zip (tests use this to make faulty releases without touching the node's code).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / artifact_name(version)
    write_zip(artifact_files(version, module, extra_files), target)
    return target


def main(argv: Sequence[str] | None = None) -> int:
    return artifact_zip.release_main(
        "python -m storagenode.release", "storagenode", build_artifact, argv
    )


if __name__ == "__main__":
    sys.exit(main())
