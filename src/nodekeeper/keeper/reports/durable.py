"""Write a small file so that, after a crash or a power cut, it is either whole or absent."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

TEMP_SUFFIX = ".tmp"


def write_durably(path: Path, data: bytes) -> None:
    """Temp file in the same directory → fsync → rename over ``path`` → fsync the directory.

    The rename is atomic, so readers see the old content or the new, never a mix; the
    temp name ends in ``.tmp`` so a crash leaves only files that ``remove_temp_files``
    recognises. The directory fsync makes the rename itself survive a power cut (POSIX;
    Windows has no directory handles for this and NTFS journals the rename).
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
    try:
        with open(tmp, "xb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_directory(path.parent)


def fsync_directory(directory: Path) -> None:
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
