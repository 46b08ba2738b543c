"""Reproducible release zips, shared by the node's and the keeper's release builders.

Both builders ship a Python package's source plus the manifest
``nodekeeper-artifact.json`` (:mod:`nodekeeper.version.manifest`). What they share lives
here: collecting a package's files and writing the zip byte-for-byte reproducibly
(entries sorted, fixed timestamps and modes: same input, same sha256) and atomically.
The zip file itself is 0644 whatever the umask: a release is public, and the web server
or CDN uploader that serves it often runs as another user.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from nodekeeper.version.manifest import (
    MANIFEST_NAME,
    ArtifactManifest,
    manifest_for_zip,
    render_manifest,
)
from nodekeeper.version.versions import InvalidVersionError

EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip can hold
ZIP_MODE = 0o644


def package_files(package_dir: Path, prefix: str) -> dict[str, bytes]:
    """The package's ``*.py`` files keyed by their path in the zip (``prefix/...``).

    Caches (``__pycache__``) are left out: they are rebuilt on the target and would make
    the zip depend on which interpreter last ran the tree.
    """
    files: dict[str, bytes] = {}
    for path in sorted(package_dir.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        files[f"{prefix}/{path.relative_to(package_dir).as_posix()}"] = path.read_bytes()
    return files


def with_manifest(files: Mapping[str, bytes], manifest: ArtifactManifest) -> dict[str, bytes]:
    """``files`` plus the rendered manifest, checked by the same parser the keeper uses,
    so a builder can never write an artifact the keeper would refuse to run."""
    out = dict(files)
    out[MANIFEST_NAME] = render_manifest(manifest)
    manifest_for_zip(list(out), out[MANIFEST_NAME])
    return out


def write_zip(files: Mapping[str, bytes], target: Path) -> None:
    """Write reproducibly and atomically: a half-written zip never has the final name."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name in sorted(files):
                info = zipfile.ZipInfo(name, date_time=EPOCH)
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, files[name])
        # mkstemp made it 0600 (private, as a temp file should be); the release is not.
        os.chmod(tmp, ZIP_MODE)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def release_main(
    prog: str, process: str, build: Callable[[str, Path], Path], argv: Sequence[str] | None
) -> int:
    """The ``--version X --out DIR`` command line both release builders share."""
    parser = argparse.ArgumentParser(prog=prog, description=f"Build a {process} release zip.")
    parser.add_argument("--version", required=True, help="release version, e.g. 1.2.3")
    parser.add_argument("--out", type=Path, required=True, help="directory for the zip")
    args = parser.parse_args(argv)
    try:
        path = build(args.version, args.out)
    except InvalidVersionError as exc:
        parser.error(str(exc))
    except OSError as exc:
        print(f"cannot write the artifact: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0
