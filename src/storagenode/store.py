"""The piece store: piece files on disk, their metadata in SQLite.

Durability rule: a piece is visible (and its upload acknowledged) only once its row is
committed, and the row is committed only after the data file is fsynced and renamed into
place and that rename is fsynced. So a crash at any instant leaves either a complete,
listed piece, or leftovers that no one can see (a temp file, or a piece file without a
row), which :meth:`PieceStore.open` deletes.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from nodekeeper.durable import fsync_dir
from storagenode import migrations
from storagenode.log import get_logger

DB_FILE = "piecestore.db"
BLOBS_DIR = "blobs"
TEMP_DIR = "temp"
PIECE_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


class StoreError(Exception):
    """A request the store refuses; ``status`` is the HTTP status that says why."""

    status = 400


class InvalidPieceError(StoreError):
    status = 400


class PieceExistsError(StoreError):
    status = 409


class QuotaExceededError(StoreError):
    status = 507


class PieceNotFoundError(StoreError):
    status = 404


@dataclass(frozen=True)
class PieceInfo:
    piece_id: str
    size: int
    sha256: str


def validate_piece_id(piece_id: str) -> str:
    if not PIECE_ID.match(piece_id):
        raise InvalidPieceError("piece ID must be 1-128 characters of A-Z, a-z, 0-9, '-' and '_'")
    return piece_id


def blob_name(piece_id: str) -> str:
    """File name of a piece: a hash of its ID, so that IDs differing only by case do not
    collide on Windows and names like CON or NUL never reach the file system."""
    return hashlib.sha256(piece_id.encode("ascii")).hexdigest()


class Upload:
    """One piece being received: bytes go to a temp file; :meth:`commit` publishes it."""

    def __init__(self, store: PieceStore, piece_id: str, size: int) -> None:
        self._store = store
        self.piece_id = piece_id
        self.size = size
        self._hash = hashlib.sha256()
        self._received = 0
        self._temp = store.temp_dir / f"{uuid.uuid4().hex}.part"
        self._file: BinaryIO | None = open(self._temp, "xb")  # noqa: SIM115 - closed in commit/abort

    def write(self, chunk: bytes) -> None:
        if self._received + len(chunk) > self.size:
            raise InvalidPieceError(f"body is longer than the declared {self.size} bytes")
        assert self._file is not None
        self._file.write(chunk)
        self._hash.update(chunk)
        self._received += len(chunk)

    def commit(self, expected_sha256: str) -> PieceInfo:
        if self._received != self.size:
            raise InvalidPieceError(f"received {self._received} of {self.size} bytes")
        digest = self._hash.hexdigest()
        if digest != expected_sha256.lower():
            raise InvalidPieceError(
                f"content hash mismatch: body has sha256 {digest}, header says {expected_sha256}"
            )
        assert self._file is not None
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        info = PieceInfo(self.piece_id, self.size, digest)
        self._store._publish(self._temp, info)
        return info

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._temp.unlink(missing_ok=True)


class PieceStore:
    def __init__(self, root: Path, allocated_bytes: int, conn: sqlite3.Connection) -> None:
        self.root = root
        self.allocated_bytes = allocated_bytes
        self.blobs_dir = root / BLOBS_DIR
        self.temp_dir = root / TEMP_DIR
        self._conn = conn
        # One connection, serialized: writes are fsync-bound anyway, and it keeps the
        # used-space counter exactly in step with the table.
        self._lock = threading.Lock()
        self._reserved: dict[str, int] = {}
        self._used = 0
        self.schema_version = 0

    @classmethod
    def open(
        cls,
        root: Path,
        allocated_bytes: int,
        schema: Sequence[migrations.Migration] | None = None,
    ) -> PieceStore:
        """Open (creating) the store, migrate its database and remove crash leftovers.

        Raises migrations.DowngradeError / MigrationError for the caller to report.
        """
        (root / BLOBS_DIR).mkdir(parents=True, exist_ok=True)
        (root / TEMP_DIR).mkdir(exist_ok=True)
        conn = open_database(root / DB_FILE)
        try:
            store = cls(root, allocated_bytes, conn)
            store.schema_version = migrations.migrate(conn, schema)
            store._recover()
        except BaseException:
            conn.close()
            raise
        return store

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @property
    def used_bytes(self) -> int:
        return self._used

    @property
    def reserved_bytes(self) -> int:
        with self._lock:
            return sum(self._reserved.values())

    def blob_path(self, piece_id: str) -> Path:
        name = blob_name(piece_id)
        return self.blobs_dir / name[:2] / name

    @contextmanager
    def upload(self, piece_id: str, size: int) -> Iterator[Upload]:
        """Reserve space for a piece and yield its Upload; aborted unless committed."""
        validate_piece_id(piece_id)
        if size < 0:
            raise InvalidPieceError("size must not be negative")
        with self._lock:
            if piece_id in self._reserved or self._row(piece_id) is not None:
                raise PieceExistsError(f"piece {piece_id} already exists; pieces are immutable")
            free = self.allocated_bytes - self._used - sum(self._reserved.values())
            if size > free:
                raise QuotaExceededError(
                    f"not enough allocated space: piece needs {size} bytes, {max(free, 0)} free "
                    f"of {self.allocated_bytes} allocated"
                )
            self._reserved[piece_id] = size
        upload: Upload | None = None
        try:
            upload = Upload(self, piece_id, size)
            yield upload
        finally:
            if upload is not None:
                upload.abort()  # no-op after a commit
            with self._lock:
                self._reserved.pop(piece_id, None)

    def _publish(self, temp: Path, info: PieceInfo) -> None:
        final = self.blob_path(info.piece_id)
        if not final.parent.is_dir():
            final.parent.mkdir(exist_ok=True)
            fsync_dir(self.blobs_dir)
        os.replace(temp, final)
        fsync_dir(final.parent)
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with self._lock:
            # synchronous=FULL: the commit is on disk when execute returns.
            self._conn.execute(
                "INSERT INTO pieces (id, size, sha256, created_at) VALUES (?, ?, ?, ?)",
                (info.piece_id, info.size, info.sha256, created),
            )
            self._used += info.size

    def _row(self, piece_id: str) -> tuple[int, str] | None:
        return self._conn.execute(
            "SELECT size, sha256 FROM pieces WHERE id = ?", (piece_id,)
        ).fetchone()

    @contextmanager
    def read(self, piece_id: str) -> Iterator[tuple[PieceInfo, BinaryIO]]:
        validate_piece_id(piece_id)
        with self._lock:
            row = self._row(piece_id)
        if row is None:
            raise PieceNotFoundError(f"piece {piece_id} not found")
        try:
            f = open(self.blob_path(piece_id), "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            raise PieceNotFoundError(f"piece {piece_id} was deleted") from None
        try:
            yield PieceInfo(piece_id, row[0], row[1]), f
        finally:
            f.close()

    def delete(self, piece_id: str) -> None:
        validate_piece_id(piece_id)
        with self._lock:
            row = self._row(piece_id)
            if row is None:
                raise PieceNotFoundError(f"piece {piece_id} not found")
            # Row first: from here the piece is gone for clients even if the unlink fails.
            self._conn.execute("DELETE FROM pieces WHERE id = ?", (piece_id,))
            self._used -= row[0]
        try:
            self.blob_path(piece_id).unlink(missing_ok=True)
        except OSError as exc:  # e.g. open for a download on Windows; cleaned at next start
            get_logger().warning(
                "piece file left for cleanup",
                extra={"fields": {"piece": piece_id, "err": str(exc)}},
            )

    def _recover(self) -> None:
        """Delete what a crash left behind: temp files and piece files without a row."""
        log = get_logger()
        removed_temp = 0
        for leftover in self.temp_dir.iterdir():
            leftover.unlink(missing_ok=True)
            removed_temp += 1
        rows = self._conn.execute("SELECT id, size FROM pieces").fetchall()
        listed = {blob_name(piece_id): (piece_id, size) for piece_id, size in rows}
        seen: set[str] = set()
        removed_orphans = 0
        for shard in self.blobs_dir.iterdir():
            for blob in shard.iterdir():
                if blob.name in listed:
                    seen.add(blob.name)
                else:
                    blob.unlink(missing_ok=True)
                    removed_orphans += 1
        missing = [listed[name] for name in listed.keys() - seen]
        for piece_id, _size in missing:
            # Cannot happen through this code (the file is durable before the row);
            # it means the disk was changed behind the node's back. Say so loudly.
            log.error("piece file missing; dropping its row", extra={"fields": {"piece": piece_id}})
            self._conn.execute("DELETE FROM pieces WHERE id = ?", (piece_id,))
        (used,) = self._conn.execute("SELECT COALESCE(SUM(size), 0) FROM pieces").fetchone()
        self._used = int(used)
        if removed_temp or removed_orphans:
            log.info(
                "removed leftovers of an interrupted run",
                extra={"fields": {"temp_files": removed_temp, "unlisted_pieces": removed_orphans}},
            )


def open_database(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    # WAL + synchronous=FULL: every commit is durable before it returns.
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn
