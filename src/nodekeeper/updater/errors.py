"""Typed failures of the fetch → verify → install steps, each carrying its own policy.

Every exception carries a ``kind``, the short name the error index uses, so mapping an
exception to a record is ``exc.kind`` and never a string match on a message. Two more
class attributes are the updater's error policy, kept as data on the class instead of an
``isinstance`` ladder in each caller (the node's machine and the keeper's self-update
read the same attributes):

- ``report_kind``: the report sent to the control plane when an update fails with it
  before the switch (the control plane counts these per release);
- ``marks_release_failed``: the failure is the release's fault (it would fail the same
  way next time), so the version is not tried again until a newer one is announced;
  otherwise (the network's or the disk's fault) the next cycle retries it.

Messages are written for the operator reading the keeper's log: what happened, to which
file or URL; what the keeper does next is the state machine's business.

    class                            kind                 report_kind          marks failed
    UpdateError                      update_failed        update_failed        no
    ├── CheckFailed                  check_failed         update_failed        no
    │   └── AnnouncementInvalid      announcement_invalid update_failed        no
    ├── NoArtifact                   no_artifact          update_failed        no
    ├── DownloadFailed               download_failed      download_failed      no
    │   └── DownloadCancelled        download_cancelled   download_failed      no
    ├── VerificationFailed           verification_failed  verification_failed  no
    ├── SignatureCheckFailed         signature_failed     verification_failed  no
    ├── StorageError                 storage_failed       update_failed        no
    │   ├── OutOfSpace               out_of_space         out_of_space         no
    │   └── ReadOnlyFileSystem       read_only_filesystem update_failed        no
    ├── InvalidArtifact              invalid_artifact     update_failed        yes
    ├── PreflightFailed              preflight_failed     update_failed        yes
    └── IdentityUnavailable          identity_unavailable update_failed        no

(``test_errors.py`` checks this table against the classes.) What each one means:
CheckFailed: announcement unreachable or HTTP error; AnnouncementInvalid: the document
does not validate; NoArtifact: nothing verifiable for this platform; DownloadFailed:
network, HTTP status, stall, cut body; DownloadCancelled: the keeper is shutting down;
VerificationFailed: size or sha256 differ (file deleted); SignatureCheckFailed: signed
releases are on (``[update] trusted_root``) and TUF refused the control plane's metadata or
the artifact is not the signed one (``check`` says which check, decision 085; nothing was
downloaded); StorageError: the disk refused
(permissions, I/O); InvalidArtifact: hostile or malformed zip or manifest;
PreflightFailed: ``<artifact> version`` failed or lied; IdentityUnavailable: the node's
identity.key is unreadable.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import ClassVar


class UpdateError(Exception):
    """Base of every updater failure; ``kind`` names it for the error index,
    ``report_kind`` and ``marks_release_failed`` are its policy (module docstring)."""

    kind: ClassVar[str] = "update_failed"
    report_kind: ClassVar[str] = "update_failed"
    marks_release_failed: ClassVar[bool] = False

    def report_details(self) -> dict[str, str]:
        """Fields the report carries besides kind and message (its ``details``)."""
        return {}


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
    report_kind = "download_failed"

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
    report_kind = "verification_failed"

    def __init__(self, message: str, *, expected: str | int, actual: str | int) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual

    def report_details(self) -> dict[str, str]:
        # Sizes are ints, digests are text: which of the two checks refused the bytes.
        return {"check": "size" if isinstance(self.expected, int) else "sha256"}


class SignatureCheckFailed(UpdateError):
    """Signed releases (decision 085): TUF's metadata or the signed entry refused the
    artifact before a byte of it was downloaded. ``check`` is the check that failed, one
    of ``SIGNATURE_CHECKS``; ``role`` the TUF role whose metadata failed it, when one did.

    Not the release's fault as far as the keeper can tell (a frozen mirror, a replayed
    copy or an expired timestamp must not make a good release look failed): the next
    cycle checks again."""

    kind = "signature_failed"
    report_kind = "verification_failed"

    def __init__(self, message: str, *, check: str, role: str | None = None) -> None:
        super().__init__(message)
        self.check = check
        self.role = role

    def report_details(self) -> dict[str, str]:
        details = {"check": self.check}
        if self.role is not None:
            details["role"] = self.role
        return details


# What ``SignatureCheckFailed.check`` may say (reports, the error index, the status).
SIGNATURE_CHECKS = (
    "not_signed",  # the artifact is not in the signed targets metadata
    "signature",  # metadata not signed by the threshold of keys its delegator names
    "rollback",  # metadata older than what this keeper already saw
    "expired",  # metadata past its expiry (a freeze, or re-signing stopped)
    "inconsistent",  # metadata not the version or hash its parent names (mix-and-match)
    "too_large",  # metadata larger than its bound (endless data)
    "invalid_metadata",  # not parseable as TUF metadata
    "announcement_mismatch",  # the signed length or sha256 is not the announcement's
    "target_mismatch",  # the signed entry's custom fields name another artifact
    "trusted_root",  # the configured trusted root cannot be read or is not a valid root
)


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
    report_kind = "out_of_space"

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
    marks_release_failed = True


class PreflightFailed(UpdateError):
    """``<artifact> version`` failed, timed out, or printed another version. The
    unpacked directory is left for the caller to delete or keep for inspection."""

    kind = "preflight_failed"
    marks_release_failed = True

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
