"""Small files that, after a crash or a power cut, are either whole or absent.

The one implementation for the keeper's journal, report queue and records and the
reference node's files. (The launcher keeps its own copy on purpose: it imports only
the standard library, so no keeper release can break it.)
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

TEMP_SUFFIX = ".tmp"


def write_durably(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Temp file in the same directory → fsync → rename over ``path`` → fsync the directory.

    The rename is atomic, so readers see the old content or the new, never a mix; the
    temp name ends in ``.tmp`` so a crash leaves only files that ``remove_temp_files``
    recognises. The directory fsync makes the rename itself survive a power cut (POSIX;
    Windows has no directory handles for this and NTFS journals the rename).
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
    try:
        # Created with ``mode`` (less the umask), not widened to it afterwards: a secret
        # written 0600 is never readable by others, not even while it is being written.
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        with open(os.open(tmp, flags, mode), "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make a directory's entries (a created, renamed or deleted file) durable. Windows
    cannot open a directory for fsync and NTFS journals the rename, so it is skipped."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_temp_files(directory: Path) -> int:
    """Delete what a writer killed mid-write left behind; returns how many."""
    removed = 0
    for leftover in directory.glob(f".*{TEMP_SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
            removed += 1
    return removed
