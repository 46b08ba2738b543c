"""Small disk helpers shared by download and unpack: free space, fsync, quiet deletes."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

from .errors import OutOfSpace, storage_error

MiB = 1024 * 1024


def check_free_space(directory: Path, needed: int, what: str) -> None:
    """Raise OutOfSpace unless the file system of ``directory`` has ``needed`` bytes free.

    Checked before a download or an unpack starts, so a full disk is reported as such
    (with both figures) instead of as a write failing half-way, and nothing is written.
    It is an estimate (another process may fill the disk meanwhile), so the writers
    still handle ENOSPC themselves.
    """
    try:
        free = shutil.disk_usage(directory).free
    except OSError as exc:
        raise storage_error(exc, directory, "read the free space of") from None
    if free < needed:
        raise OutOfSpace(
            f"out of space: {what} needs {_mib(needed)} free in {directory}, "
            f"{_mib(free)} is available; free some space (the keeper retries next cycle)",
            path=directory,
            needed=needed,
            available=free,
        )


def _mib(n: int) -> str:
    return f"{n / MiB:.1f} MiB"


def remove_file(path: Path) -> None:
    """Delete a file if it is there; a failure to delete is not worth a second error
    on top of the one being reported (the leftover is a ``.part``/``.tmp-*`` name that
    is never executed and is cleaned up or overwritten by the next attempt)."""
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def remove_tree(path: Path) -> None:
    """Delete a directory tree, ignoring errors (see ``remove_file``)."""
    shutil.rmtree(path, ignore_errors=True)
