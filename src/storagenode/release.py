"""Release builder: ``python -m storagenode.release --version X --out DIR``.

Writes ``DIR/storagenode_<version>.zip``: the ``storagenode`` package with the version
baked into ``buildinfo.py``, and the keeper's manifest ``nodekeeper-artifact.json``
(format in :mod:`nodekeeper.version.manifest`). The zip is byte-for-byte reproducible:
entries sorted, fixed timestamps and modes, so a rebuild has the same sha256.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from nodekeeper.version.manifest import (
    MANIFEST_NAME,
    ArtifactManifest,
    PythonRun,
    manifest_for_zip,
    render_manifest,
)
from nodekeeper.version.versions import InvalidVersionError, normalize_version

PROCESS = "storagenode"
PACKAGE_DIR = Path(__file__).resolve().parent
_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip can hold


def artifact_name(version: str) -> str:
    return f"{PROCESS}_{normalize_version(version)}.zip"


def package_files() -> dict[str, bytes]:
    """The package's source files, keyed by their path in the zip."""
    files: dict[str, bytes] = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        files[f"{PROCESS}/{path.relative_to(PACKAGE_DIR).as_posix()}"] = path.read_bytes()
    return files


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
    files[MANIFEST_NAME] = render_manifest(manifest)
    # Refuse to write an artifact the keeper would refuse to run.
    manifest_for_zip(list(files), files[MANIFEST_NAME])
    return files


def write_zip(files: Mapping[str, bytes], target: Path) -> None:
    """Write reproducibly and atomically: a half-written zip never has the final name."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name in sorted(files):
                info = zipfile.ZipInfo(name, date_time=_EPOCH)
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, files[name])
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    parser = argparse.ArgumentParser(
        prog="python -m storagenode.release", description="Build a storagenode release zip."
    )
    parser.add_argument("--version", required=True, help="release version, e.g. 1.2.3")
    parser.add_argument("--out", type=Path, required=True, help="directory for the zip")
    args = parser.parse_args(argv)
    try:
        path = build_artifact(args.version, args.out)
    except InvalidVersionError as exc:
        parser.error(str(exc))
    except OSError as exc:
        print(f"cannot write the artifact: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
