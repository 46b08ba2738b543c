"""Unpacking side by side: good artifacts, hostile zips, atomic placement."""

from __future__ import annotations

import os
import stat
import warnings
import zipfile
from pathlib import Path

import pytest

from nodekeeper.updater.errors import InvalidArtifact
from nodekeeper.updater.unpack import (
    MemberInfo,
    check_members,
    install_dir,
    remove_leftovers,
    unpack,
)
from nodekeeper.version.manifest import ExecutableRun, PythonRun
from tests.artifacts import build_good

from .zips import PY_MANIFEST, entry, make_zip, regular


@pytest.fixture(scope="module")
def good_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_good("1.2.3", tmp_path_factory.mktemp("rel"))


def versions_left(versions: Path) -> list[str]:
    proc = versions / "storagenode"
    return sorted(p.name for p in proc.iterdir()) if proc.exists() else []


def test_release_artifact_installs_side_by_side(good_zip: Path, tmp_path: Path) -> None:
    versions = tmp_path / "versions"
    installed = unpack(good_zip, versions, "storagenode", "v1.2.3")
    assert (
        installed.path
        == versions / "storagenode" / "1.2.3"
        == install_dir(versions, "storagenode", "1.2.3")
    )
    assert (installed.process, installed.version) == ("storagenode", "1.2.3")
    assert installed.manifest.run == PythonRun("storagenode")
    with zipfile.ZipFile(good_zip) as zf:
        for info in zf.infolist():
            target = installed.path / info.filename
            assert target.read_bytes() == zf.read(info)
            assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert versions_left(versions) == ["1.2.3"]


def test_same_version_again_replaces_it_whole(good_zip: Path, tmp_path: Path) -> None:
    versions = tmp_path / "versions"
    first = unpack(good_zip, versions, "storagenode", "1.2.3")
    (first.path / "stale.txt").write_text("from a damaged earlier install")
    second = unpack(good_zip, versions, "storagenode", "1.2.3")
    assert not (second.path / "stale.txt").exists()
    assert versions_left(versions) == ["1.2.3"]


def test_bare_executable_gets_the_execute_bit(tmp_path: Path) -> None:
    # Storj's own format: one file, no manifest, made on Windows (no Unix mode at all).
    z = make_zip(
        tmp_path / "a.zip",
        [(entry("storagenode", None, system=0), b"#!/bin/sh\necho 'Version: 1.2.3'\n")],
        manifest=None,
    )
    old = os.umask(0o077)  # a strict umask must not drop the bit either
    try:
        installed = unpack(z, tmp_path / "versions", "storagenode", "1.2.3")
    finally:
        os.umask(old)
    assert installed.manifest.run == ExecutableRun("storagenode")
    assert installed.manifest.version is None
    assert stat.S_IMODE((installed.path / "storagenode").stat().st_mode) == 0o755


def test_setuid_and_world_write_bits_are_never_installed(tmp_path: Path) -> None:
    z = make_zip(
        tmp_path / "a.zip",
        [(regular("pkg/tool", 0o6777), b"x"), (regular("pkg/data", 0o666), b"y")],
    )
    installed = unpack(z, tmp_path / "versions", "storagenode", "1.2.3")
    assert stat.S_IMODE((installed.path / "pkg/tool").stat().st_mode) == 0o755
    assert stat.S_IMODE((installed.path / "pkg/data").stat().st_mode) == 0o644


HOSTILE = {
    "zip-slip": ([("../evil.py", b"x")], "would land outside"),
    "deep zip-slip": ([("pkg/../../evil.py", b"x")], "would land outside"),
    "backslash zip-slip": ([("pkg\\..\\..\\evil.py", b"x")], "would land outside"),
    "absolute": ([("/tmp/evil.py", b"x")], "would land outside"),
    "drive letter": ([("C:/evil.py", b"x")], "would land outside"),
    "drive-relative": ([("pkg/C:evil.py", b"x")], "has a ':'"),
    "data stream": ([("pkg/a.py:hidden", b"x")], "has a ':'"),
    "symlink": ([(entry("pkg/link", stat.S_IFLNK | 0o777), b"/etc/passwd")], "symlink"),
    "char device": ([(entry("pkg/tty", stat.S_IFCHR | 0o666), b"")], "device"),
    "block device": ([(entry("pkg/sda", stat.S_IFBLK | 0o666), b"")], "device"),
    "fifo": ([(entry("pkg/fifo", stat.S_IFIFO | 0o666), b"")], "FIFO"),
    "socket": ([(entry("pkg/sock", stat.S_IFSOCK | 0o666), b"")], "socket"),
    "duplicate": ([("pkg/a.py", b"1"), ("pkg/a.py", b"2")], "name the same file"),
    "case duplicate": ([("pkg/a.py", b"1"), ("pkg/A.py", b"2")], "name the same file"),
    "file over dir": ([("pkg/a", b"1"), ("pkg/a/b.py", b"2")], "is a file but"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_zip_is_refused_and_leaves_nothing(tmp_path: Path, case: str) -> None:
    entries, message = HOSTILE[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names
        z = make_zip(tmp_path / "a.zip", entries)
    versions = tmp_path / "box" / "versions"
    with pytest.raises(InvalidArtifact, match=message) as info:
        unpack(z, versions, "storagenode", "1.2.3")
    assert info.value.kind == "invalid_artifact"
    # Every entry is checked before anything is created: not even versions/ exists.
    assert not (tmp_path / "box").exists()
    assert not (tmp_path / "evil.py").exists()


@pytest.mark.parametrize(
    ("run", "message"),
    [
        ({"kind": "executable", "path": "../../bin/sh"}, "would land outside"),
        ({"kind": "executable", "path": "/bin/sh"}, "would land outside"),
        ({"kind": "executable", "path": "bin/missing"}, "not in the zip"),
        ({"kind": "python", "module": "missing"}, "not in the zip"),
        ({"kind": "shell", "command": "rm -rf /"}, "update it"),
    ],
)
def test_manifest_naming_something_outside_or_missing(
    tmp_path: Path, run: dict, message: str
) -> None:
    z = make_zip(tmp_path / "a.zip", [("pkg/x.py", b"")], manifest={**PY_MANIFEST, "run": run})
    with pytest.raises(InvalidArtifact, match=message):
        unpack(z, tmp_path / "versions", "storagenode", "1.2.3")
    assert versions_left(tmp_path / "versions") == []


@pytest.mark.parametrize(
    ("process", "version", "message"),
    [
        ("nodekeeper", "1.2.3", "is for process 'storagenode'"),
        ("storagenode", "1.2.4", "says it is storagenode 1.2.3, but 1.2.4 was announced"),
    ],
)
def test_manifest_must_match_the_announcement(
    good_zip: Path, tmp_path: Path, process: str, version: str, message: str
) -> None:
    with pytest.raises(InvalidArtifact, match=message):
        unpack(good_zip, tmp_path / "versions", process, version)
    assert not (tmp_path / "versions" / process / version).exists()


def test_not_a_zip(tmp_path: Path) -> None:
    bad = tmp_path / "a.zip"
    bad.write_bytes(b"MZ this is not a zip" * 100)
    with pytest.raises(InvalidArtifact, match="not a readable zip"):
        unpack(bad, tmp_path / "versions", "storagenode", "1.2.3")


def test_damaged_member_is_refused_mid_extraction(tmp_path: Path) -> None:
    payload = b"A" * 100_000
    z = make_zip(tmp_path / "a.zip", [("pkg/big.bin", payload)], compression=zipfile.ZIP_STORED)
    raw = bytearray(z.read_bytes())
    at = raw.find(payload)
    raw[at + 50_000] ^= 0xFF  # the CRC no longer matches
    z.write_bytes(bytes(raw))
    with pytest.raises(InvalidArtifact, match="damaged"):
        unpack(z, tmp_path / "versions", "storagenode", "1.2.3")
    assert versions_left(tmp_path / "versions") == []


def test_unsupported_compression_method(tmp_path: Path) -> None:
    z = make_zip(tmp_path / "a.zip", [("pkg/x.py", b"payload")], compression=zipfile.ZIP_STORED)
    raw = bytearray(z.read_bytes())
    # Compression method 99 (WinZip AES) in pkg/x.py's local and central headers.
    for signature, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        at = raw.find(signature, raw.find(signature) + 1)
        at = raw.find(signature, at + 1)  # the third entry: manifest, pkg/__init__, pkg/x
        raw[at + offset : at + offset + 2] = (99).to_bytes(2, "little")
    z.write_bytes(bytes(raw))
    with pytest.raises(InvalidArtifact, match="cannot be unpacked"):
        unpack(z, tmp_path / "versions", "storagenode", "1.2.3")
    assert versions_left(tmp_path / "versions") == []


def test_remove_leftovers(tmp_path: Path) -> None:
    proc = tmp_path / "versions" / "storagenode"
    for name in ("1.2.3", "1.2.4.tmp-abc", "1.2.2.old-def"):
        (proc / name / "sub").mkdir(parents=True)
        (proc / name / "sub" / "f").write_text("x")
    assert remove_leftovers(tmp_path / "versions", "storagenode") == []
    assert sorted(p.name for p in proc.iterdir()) == ["1.2.3"]
    assert remove_leftovers(tmp_path / "versions", "nodekeeper") == []


def m(name: str, mode: int = 0, size: int = 1, is_dir: bool = False) -> MemberInfo:
    return MemberInfo(name, mode, size, is_dir)


def test_check_members_normalises_and_marks_executables() -> None:
    out = check_members(
        [
            m("./a/", is_dir=True, size=0),
            m("a//b.py"),
            m("bin/run", stat.S_IFREG | 0o755),
            m("bin/", stat.S_IFDIR | 0o755, size=0),
            m("plain", 0o100),
        ]
    )
    assert [(x.path, x.is_dir, x.executable) for x in out] == [
        ("a", True, False),
        ("a/b.py", False, False),
        ("bin/run", False, True),
        ("bin", True, False),
        ("plain", False, True),
    ]


@pytest.mark.parametrize("name", ["", "/", "./", "a/..", "a/../b", "\x00", "..\\x"])
def test_check_members_refuses_names(name: str) -> None:
    with pytest.raises(InvalidArtifact):
        check_members([m(name)])
