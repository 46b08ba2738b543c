"""Writes of new secret files; durable replacement lives in :mod:`nodekeeper.durable`."""

from __future__ import annotations

import os
from pathlib import Path

from nodekeeper.durable import fsync_dir


def exclusive_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write a new file that must not exist yet (secrets: never overwrite, never race)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(path.parent)
