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


def test_the_policy_table_in_the_docstring_is_the_classes() -> None:
    """The module docstring's table (kind, report kind, marks failed) is what the
    classes carry: the table operators and reviewers read cannot drift from the code."""
    rows = {}
    for line in (errors.__doc__ or "").splitlines():
        words = line.replace("│", " ").replace("├──", " ").replace("└──", " ").split()
        if len(words) == 4 and words[3] in ("yes", "no"):
            rows[words[0]] = (words[1], words[2], words[3] == "yes")
    classes = [UpdateError, *all_subclasses(UpdateError)]
    ours = {c.__name__: c for c in classes if c.__module__ == errors.__name__}
    assert rows.keys() == ours.keys()
    for name, cls in ours.items():
        assert rows[name] == (cls.kind, cls.report_kind, cls.marks_release_failed), name


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
