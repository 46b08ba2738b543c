"""Release zips for the control-plane tests: the documented artifact format, made small.

The keeper's real builders (storagenode.release) are tested elsewhere; these zips only
need to satisfy the parser the control plane and the keeper share, with room for
padding so uploads and Range requests have something to chew on.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

from nodekeeper.version.manifest import ArtifactManifest, PythonRun, render_manifest


def release_zip(
    path: Path,
    version: str,
    *,
    process: str = "storagenode",
    manifest_version: str | None = None,
    padding: int = 20_000,
) -> str:
    """Write a valid artifact of ``process`` to ``path``; returns its sha256.

    ``manifest_version`` puts another version in the manifest (a mislabelled build)."""
    manifest = ArtifactManifest(process, manifest_version or version, PythonRun(process))
    with zipfile.ZipFile(path, "w") as zf:  # stored: the size follows the padding
        zf.writestr("nodekeeper-artifact.json", render_manifest(manifest))
        zf.writestr(f"{process}/__main__.py", "print('hello')\n")
        zf.writestr(f"{process}/padding.bin", os.urandom(padding))
    return hashlib.sha256(path.read_bytes()).hexdigest()
