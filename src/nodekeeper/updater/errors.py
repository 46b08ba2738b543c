"""Typed failures of the fetch → verify → install steps.

Every exception carries a ``kind``, the short name the update state machine and the
error reports use, so mapping an exception to a report is ``exc.kind`` and never a
string match on a message. Messages are written for the operator reading the keeper's
log: what happened, to which file or URL, and what the keeper does next is the state
machine's business (it always retries on the next cycle).

    UpdateError                      kind
    ├── CheckFailed                  check_failed         announcement unreachable / HTTP error
    │   └── AnnouncementInvalid      announcement_invalid the document does not validate
    ├── NoArtifact                   no_artifact          nothing verifiable for this platform
    ├── DownloadFailed               download_failed      network, HTTP status, stall, cut body
    │   └── DownloadCancelled        download_cancelled   the keeper is shutting down
    ├── VerificationFailed           verification_failed  size or sha256 differ (file deleted)
    ├── StorageError                 storage_failed       the disk refused (permissions, I/O)
    │   ├── OutOfSpace               out_of_space
    │   └── ReadOnlyFileSystem       read_only_filesystem
    ├── InvalidArtifact              invalid_artifact     hostile or malformed zip / manifest
    ├── PreflightFailed              preflight_failed     `<artifact> version` failed or lied
    └── IdentityUnavailable          identity_unavailable the node's identity.key is unreadable
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import ClassVar


class UpdateError(Exception):
    """Base of every updater failure; ``kind`` names it for reports."""

    kind: ClassVar[str] = "update_failed"


class CheckFailed(UpdateError):
    """The announcement could not be fetched. ``retry_after`` (seconds) is the server's
    Retry-After when it sent one; ``status`` the HTTP status when there was a response."""

    kind = "check_failed"

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class AnnouncementInvalid(CheckFailed):
    """The server answered, but with a document that does not validate."""

    kind = "announcement_invalid"


class NoArtifact(UpdateError):
    """The target version has no artifact with sha256 and size for this platform, so it
    cannot be verified and is not downloaded."""

    kind = "no_artifact"


class DownloadFailed(UpdateError):
    """The transfer did not complete. The ``.part`` file is kept when ``resumable`` (the
    next attempt continues with a Range request), deleted otherwise."""

    kind = "download_failed"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        received: int = 0,
        resumable: bool = True,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.received = received
        self.resumable = resumable


class DownloadCancelled(DownloadFailed):
    """The caller's cancel event was set; the ``.part`` file is kept for resuming."""

    kind = "download_cancelled"


class VerificationFailed(UpdateError):
    """The bytes are not the announced ones (corruption, a man in the middle, a wrong
    announcement). The file has been deleted before this is raised."""

    kind = "verification_failed"

    def __init__(self, message: str, *, expected: str | int, actual: str | int) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class StorageError(UpdateError):
    """The local disk refused a write or read; ``path`` is where."""

    kind = "storage_failed"

    def __init__(self, message: str, *, path: Path) -> None:
        super().__init__(message)
        self.path = path


class OutOfSpace(StorageError):
    """Not enough free space: found before starting (``needed``/``available`` set) or hit
    while writing (ENOSPC/EDQUOT; then they may be None)."""

    kind = "out_of_space"

    def __init__(
        self,
        message: str,
        *,
        path: Path,
        needed: int | None = None,
        available: int | None = None,
    ) -> None:
        super().__init__(message, path=path)
        self.needed = needed
        self.available = available


class ReadOnlyFileSystem(StorageError):
    """The file system holding ``path`` is mounted read-only (EROFS)."""

    kind = "read_only_filesystem"


class InvalidArtifact(UpdateError):
    """The verified zip cannot be installed safely: a hostile entry (zip-slip, absolute
    path, symlink, device), a broken zip, or a manifest that does not match the
    announcement. Nothing of it is left in ``versions/``."""

    kind = "invalid_artifact"


class PreflightFailed(UpdateError):
    """``<artifact> version`` failed, timed out, or printed another version. The
    unpacked directory is left for the caller to delete or keep for inspection."""

    kind = "preflight_failed"

    def __init__(self, message: str, *, exit_code: int | None = None, output: str = "") -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.output = output


class IdentityUnavailable(UpdateError):
    """The node's identity key is missing or unreadable, so its node ID (and with it the
    rollout decision) is unknown."""

    kind = "identity_unavailable"


_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}


def storage_error(exc: OSError, path: Path, doing: str) -> StorageError:
    """Map an OSError from writing ``path`` to the typed error the state machine reports.

    ``doing`` completes "cannot ... <path>", e.g. "write the download".
    Python maps Windows' ERROR_DISK_FULL/ERROR_HANDLE_DISK_FULL to ENOSPC too.
    """
    reason = exc.strerror or str(exc)
    if exc.errno in _NO_SPACE:
        return OutOfSpace(f"out of space: cannot {doing} {path}: {reason}", path=path)
    if exc.errno == errno.EROFS:
        return ReadOnlyFileSystem(
            f"read-only file system: cannot {doing} {path}: {reason}", path=path
        )
    return StorageError(f"cannot {doing} {path}: {reason}", path=path)
