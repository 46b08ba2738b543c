"""Error kinds (what reports are keyed on) and the OSError → typed error mapping."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from nodekeeper.updater import errors
from nodekeeper.updater.errors import (
    OutOfSpace,
    ReadOnlyFileSystem,
    StorageError,
    UpdateError,
    storage_error,
)


def all_subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out += [sub, *all_subclasses(sub)]
    return out


def test_every_error_has_its_own_kind() -> None:
    classes = [UpdateError, *all_subclasses(UpdateError)]
    kinds = [c.kind for c in classes if c.__module__ == errors.__name__]
    assert len(kinds) == len(set(kinds))
    assert all(k.isidentifier() and k.islower() for k in kinds)
    assert {
        "check_failed",
        "announcement_invalid",
        "no_artifact",
        "download_failed",
        "download_cancelled",
        "verification_failed",
        "storage_failed",
        "out_of_space",
        "read_only_filesystem",
        "invalid_artifact",
        "preflight_failed",
        "identity_unavailable",
    } <= set(kinds)


@pytest.mark.parametrize(
    ("code", "cls", "start"),
    [
        (errno.ENOSPC, OutOfSpace, "out of space: cannot write"),
        (errno.EDQUOT, OutOfSpace, "out of space: cannot write"),
        (errno.EROFS, ReadOnlyFileSystem, "read-only file system: cannot write"),
        (errno.EACCES, StorageError, "cannot write"),
        (errno.EIO, StorageError, "cannot write"),
    ],
)
def test_storage_error_mapping(code: int, cls: type, start: str) -> None:
    exc = storage_error(OSError(code, "boom"), Path("/d/x.part"), "write")
    assert type(exc) is cls
    assert str(exc) == f"{start} /d/x.part: boom"
    assert exc.path == Path("/d/x.part")
