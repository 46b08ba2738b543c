"""The one place where downloaded bytes are checked against the announcement.

Security property enforced here: nothing reaches ``unpack`` unless its size and sha256
equal what the control plane announced for this platform. A mismatch (a corrupted
transfer, a man in the middle, a tampered CDN copy, a wrong announcement) deletes the
file before raising, so a bad artifact can never be picked up later by mistake, and the
next cycle downloads it afresh. Signed releases will add their signature check to
``verify_download`` and ``verify_file``, next to the hash.

``download.py`` calls ``check_within_size`` and ``check_served_size`` while streaming so
that a server cannot make the keeper write more than the announced size; they are here
so that every size rule lives in one module.

Dependencies go one way: ``download`` imports this module, never the reverse. The
``.part`` suffix is here because it means "not verified yet" and only this module takes
it off; a finished transfer is described by the ``Streamed`` protocol (which
``download.Download`` satisfies), so the integrity gate does not import the network code.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path
from typing import Protocol

from nodekeeper.version.schema import Artifact

from .errors import VerificationFailed, storage_error
from .storage import MiB, remove_file

PART_SUFFIX = ".part"


class Streamed(Protocol):
    """A finished transfer as the gate needs it: ``size`` bytes at ``path`` whose sha256
    was computed while they were written (``download.Download``)."""

    @property
    def path(self) -> Path: ...

    @property
    def size(self) -> int: ...

    @property
    def sha256(self) -> str: ...


def check_within_size(received: int, artifact: Artifact, path: Path) -> None:
    """Deletes ``path`` and raises VerificationFailed when ``received`` bytes would exceed
    the announced size (checked before each chunk is written)."""
    if received > artifact.size:
        remove_file(path)
        raise VerificationFailed(
            f"the server sent more than the announced {artifact.size} bytes for "
            f"{artifact.url}; download stopped and deleted (corrupted or tampered?)",
            expected=artifact.size,
            actual=received,
        )


def check_served_size(total: int, artifact: Artifact, path: Path) -> None:
    """Deletes ``path`` and raises VerificationFailed when the server says its whole file
    is ``total`` bytes but the announcement says otherwise."""
    if total != artifact.size:
        remove_file(path)
        raise VerificationFailed(
            f"the server's copy of {artifact.url} is {total} bytes, the announcement says "
            f"{artifact.size}; not downloading it (wrong file, corrupted or tampered?)",
            expected=artifact.size,
            actual=total,
        )


def verified_path(part: Path) -> Path:
    """``x.zip.part`` → ``x.zip``: the name a file gets once it passed verification."""
    name = part.name
    return part.with_name(name[: -len(PART_SUFFIX)] if name.endswith(PART_SUFFIX) else name)


def verify_download(download: Streamed, artifact: Artifact) -> Path:
    """Check a finished download (its streamed sha256) and rename ``<name>.part`` to
    ``<name>``; returns the new path. Raises VerificationFailed (file deleted)."""
    _compare(download.path, download.size, download.sha256, artifact)
    final = verified_path(download.path)
    if final != download.path:
        try:
            os.replace(download.path, final)
        except OSError as exc:
            raise storage_error(exc, final, "rename the verified download to") from None
    return final


def verify_file(path: Path, artifact: Artifact) -> None:
    """Re-hash a file from disk and check it (after a crash, before trusting a download
    whose verification the journal cannot vouch for). Raises VerificationFailed (file
    deleted) or StorageError when it cannot be read."""
    digest = hashlib.sha256()
    size = 0
    try:
        with Path(path).open("rb") as f:
            while chunk := f.read(MiB):
                digest.update(chunk)
                size += len(chunk)
    except OSError as exc:
        raise storage_error(exc, Path(path), "read") from None
    _compare(Path(path), size, digest.hexdigest(), artifact)


def _compare(path: Path, size: int, sha256: str, artifact: Artifact) -> None:
    if size != artifact.size:
        remove_file(path)
        raise VerificationFailed(
            f"{path.name} is {size} bytes, the announcement says {artifact.size}; deleted "
            "(corrupted or tampered?), the next cycle downloads it again",
            expected=artifact.size,
            actual=size,
        )
    if not hmac.compare_digest(sha256, artifact.sha256):
        remove_file(path)
        raise VerificationFailed(
            f"{path.name} has sha256 {sha256}, the announcement says {artifact.sha256}; "
            "deleted (corrupted or tampered?), the next cycle downloads it again",
            expected=artifact.sha256,
            actual=sha256,
        )
