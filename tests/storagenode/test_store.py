"""The piece store on real files: durability order and crash-leftover cleanup."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from storagenode.store import (
    InvalidPieceError,
    PieceExistsError,
    PieceNotFoundError,
    PieceStore,
    QuotaExceededError,
    blob_name,
)


def _put(store: PieceStore, piece_id: str, data: bytes) -> None:
    with store.upload(piece_id, len(data)) as up:
        up.write(data)
        up.commit(hashlib.sha256(data).hexdigest())


def _read(store: PieceStore, piece_id: str) -> bytes:
    with store.read(piece_id) as (_info, f):
        return f.read()


def test_put_read_delete(tmp_path: Path) -> None:
    store = PieceStore.open(tmp_path, 1000)
    _put(store, "a", b"hello")
    assert _read(store, "a") == b"hello"
    assert store.used_bytes == 5
    with pytest.raises(PieceExistsError):
        _put(store, "a", b"again")
    store.delete("a")
    assert store.used_bytes == 0
    with pytest.raises(PieceNotFoundError):
        _read(store, "a")
    assert not store.blob_path("a").exists()
    store.close()


def test_ids_differing_by_case_are_separate_files(tmp_path: Path) -> None:
    store = PieceStore.open(tmp_path, 1000)
    _put(store, "Ab", b"1")
    _put(store, "aB", b"2")
    assert (_read(store, "Ab"), _read(store, "aB")) == (b"1", b"2")
    assert store.blob_path("Ab") != store.blob_path("aB")


def test_bad_hash_or_length_leaves_nothing(tmp_path: Path) -> None:
    store = PieceStore.open(tmp_path, 1000)
    with pytest.raises(InvalidPieceError, match="hash mismatch"), store.upload("x", 3) as up:
        up.write(b"abc")
        up.commit("0" * 64)
    with pytest.raises(InvalidPieceError, match="received 2 of 3"), store.upload("y", 3) as up:
        up.write(b"ab")
        up.commit(hashlib.sha256(b"ab").hexdigest())
    assert list(store.temp_dir.iterdir()) == []
    assert store.used_bytes == 0 and store.reserved_bytes == 0
    with pytest.raises(InvalidPieceError):
        store.upload("../etc", 1).__enter__()


def test_quota_counts_uploads_in_flight(tmp_path: Path) -> None:
    store = PieceStore.open(tmp_path, 10)
    with store.upload("a", 6):
        with pytest.raises(QuotaExceededError, match="4 free of 10"):
            store.upload("b", 5).__enter__()
        with pytest.raises(PieceExistsError):  # same ID while the first is in flight
            store.upload("a", 1).__enter__()
    _put(store, "b", b"12345")  # the aborted reservation was released


def test_open_removes_crash_leftovers_and_keeps_acknowledged_pieces(tmp_path: Path) -> None:
    store = PieceStore.open(tmp_path, 1000)
    _put(store, "kept", b"acknowledged")
    store.close()
    # The states a crash can leave: a temp file mid-write, and a piece renamed into place
    # whose row was never committed (so it was never acknowledged).
    (tmp_path / "temp" / "123.part").write_bytes(b"half")
    orphan = tmp_path / "blobs" / blob_name("orphan")[:2] / blob_name("orphan")
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"unacknowledged")

    store = PieceStore.open(tmp_path, 1000)
    assert list(store.temp_dir.iterdir()) == []
    assert not orphan.exists()
    assert _read(store, "kept") == b"acknowledged"
    with pytest.raises(PieceNotFoundError):
        _read(store, "orphan")
    assert store.used_bytes == len(b"acknowledged")


def test_row_whose_file_vanished_is_dropped(tmp_path: Path) -> None:
    store = PieceStore.open(tmp_path, 1000)
    _put(store, "gone", b"data")
    store.close()
    os.unlink(store.blob_path("gone"))
    store = PieceStore.open(tmp_path, 1000)
    assert store.used_bytes == 0
    with pytest.raises(PieceNotFoundError):
        _read(store, "gone")
