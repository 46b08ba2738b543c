"""Is a file a release artifact of the process and version it is published as?

Releases are immutable, so an artifact the keeper would refuse (not a zip, the wrong
process, another version inside) would burn the version number for good. Both sides
check with the same parser the keeper uses (:mod:`nodekeeper.version.manifest`): the
CLI before it uploads anything, the server before it records the release.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from nodekeeper.version.manifest import (
    MANIFEST_NAME,
    ArtifactManifest,
    InvalidArtifactError,
    check_release_identity,
    manifest_for_zip,
)

# The manifest is a few hundred bytes; a bigger one is not ours and is not read whole.
MAX_MANIFEST_BYTES = 64 * 1024
HOW_TO_BUILD = (
    'see "Artifact format" in docs/decisions/003-artifact-format.md; '
    "`python -m storagenode.release --version X "
    "--out DIR` builds one"
)


def read_manifest(path: Path) -> ArtifactManifest:
    """The manifest of the zip at ``path`` (or what a bare executable implies)."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            names = [i.filename for i in infos]
            data = None
            entry = next((i for i in infos if i.filename == MANIFEST_NAME), None)
            if entry is not None:
                if entry.file_size > MAX_MANIFEST_BYTES:
                    raise InvalidArtifactError(f"{MANIFEST_NAME} is {entry.file_size} bytes")
                data = zf.read(entry)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError) as exc:
        raise InvalidArtifactError(f"not a readable zip ({exc})") from None
    except EOFError:
        raise InvalidArtifactError("not a readable zip (it is truncated)") from None
    return manifest_for_zip(names, data)


def check_artifact(path: Path, process: str, version: str) -> ArtifactManifest:
    """The artifact's manifest if it is ``process`` ``version``; else InvalidArtifactError
    with a message that says what is wrong and how to build a good one."""
    try:
        manifest = read_manifest(path)
        check_release_identity(manifest, process, version)
    except InvalidArtifactError as exc:
        raise InvalidArtifactError(f"{exc}; {HOW_TO_BUILD}") from None
    return manifest
