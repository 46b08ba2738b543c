"""Checks that the storage dir is there and belongs to this node.

``setup`` writes a verification file holding the node ID into the storage dir. ``run``
refuses to start when the file is missing or names another node: a missing file most
often means an external drive is not mounted, and starting anyway would fill the system
disk with pieces and lose the real ones.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from nodekeeper.durable import write_durably as atomic_write

VERIFICATION_FILE = "storage-dir-verification"


class StorageDirError(Exception):
    """The storage dir cannot be used; the message says what to fix."""


def ensure_writable_dir(path: Path) -> None:
    """Create ``path`` if needed and prove it is writable by writing a file.

    os.access is not trusted: it ignores Windows ACLs and says yes to root on read-only
    mounts.
    """
    if path.exists() and not path.is_dir():
        raise StorageDirError(f"{path} exists but is not a directory: choose a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageDirError(
            f"cannot create {path}: {exc.strerror or exc}; create it yourself or choose a "
            "directory on a disk this user can write to"
        ) from None
    try:
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise StorageDirError(
            f"{path} is not writable: {exc.strerror or exc}; give this user write access or "
            "choose another directory"
        ) from None


def read_owner(storage_dir: Path) -> str | None:
    try:
        return (storage_dir / VERIFICATION_FILE).read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None


def claim(storage_dir: Path, node_id_text: str) -> None:
    atomic_write(storage_dir / VERIFICATION_FILE, (node_id_text + "\n").encode("ascii"))


def verify(storage_dir: Path, node_id_text: str) -> None:
    """Raise StorageDirError unless ``storage_dir`` was set up for this node."""
    if not storage_dir.is_dir():
        raise StorageDirError(
            f"storage dir {storage_dir} does not exist: if it is on an external or network "
            "drive, connect or mount it; the node does not start without its pieces"
        )
    try:
        owner = read_owner(storage_dir)
    except OSError as exc:
        raise StorageDirError(f"cannot read {storage_dir / VERIFICATION_FILE}: {exc}") from None
    if owner is None:
        raise StorageDirError(
            f"{storage_dir} has no {VERIFICATION_FILE} file: this is not the storage dir "
            "that setup prepared (wrong drive mounted?); fix storage_dir in config.toml"
        )
    if owner != node_id_text:
        raise StorageDirError(
            f"{storage_dir} belongs to node {owner}, not to this node {node_id_text}; "
            "fix storage_dir in config.toml"
        )
