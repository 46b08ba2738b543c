"""A full disk and a read-only disk, for real: a 4 MiB tmpfs and a read-only bind mount.

Each: a typed error saying so, nothing partial left that could be installed or executed,
and the next attempt works once the disk is fixed. A download expected to work that fails
on the network says what both ends saw of the connection (``explained``).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from nodekeeper.updater.download import DownloadSettings, download, make_client, part_path
from nodekeeper.updater.errors import DownloadFailed, OutOfSpace, ReadOnlyFileSystem
from nodekeeper.updater.netabort import KEEPER_SHUTDOWN
from nodekeeper.updater.unpack import unpack
from nodekeeper.updater.verify import verify_download
from tests.artifacts import build_good

from .conftest import ReadOnlyDir, artifact_for
from .httpserver import ClientTrace, FileServer, timeline
from .zips import make_zip

MiB = 1024 * 1024


@pytest.fixture
def trace() -> ClientTrace:
    return ClientTrace()


@pytest.fixture
def client(trace: ClientTrace) -> Iterator[httpx.Client]:
    with make_client(DownloadSettings(connect_timeout=30, read_timeout=30)) as c:
        trace.attach(c)
        yield c


class Explained:
    """Wraps a download that must not fail on the network (``with explained:``, as often
    as needed): if it does, the failure names both ends' view of each connection and the
    process-wide abort's state. The second download of test_read_only_downloads_dir
    failed once in a full run with "Server disconnected without sending a response" on a
    fresh connection and never again; this is what would tell who ended it."""

    def __init__(self, files: FileServer, trace: ClientTrace) -> None:
        self.files = files
        self.trace = trace

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, DownloadFailed):
            raise AssertionError(
                f"{exc}\n{timeline(self.files, self.trace)}\n"
                f"  KEEPER_SHUTDOWN: aborted={KEEPER_SHUTDOWN.aborted} "
                f"reason={KEEPER_SHUTDOWN.reason!r}"
            ) from exc


@pytest.fixture
def explained(files: FileServer, trace: ClientTrace) -> Explained:
    return Explained(files, trace)


@pytest.fixture(scope="module")
def good_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_good("1.2.3", tmp_path_factory.mktemp("rel"))


def fill(directory: Path) -> Path:
    """Write zeros into ``directory`` until its file system is full."""
    filler = directory / "filler"
    with contextlib.suppress(OSError), filler.open("wb") as f:
        while True:
            f.write(bytes(256 * 1024))
            f.flush()
    return filler


def leftovers(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


def test_download_larger_than_the_disk_is_refused_up_front(
    small_fs: Path, files: FileServer, client: httpx.Client
) -> None:
    data = os.urandom(6 * MiB)
    url = files.add("/a.zip", data)
    part = part_path(small_fs / "downloads", "storagenode", "1.2.3", "linux_amd64")
    with pytest.raises(OutOfSpace, match=r"needs 6\.0 MiB free in .*, 4\.0 MiB is available") as e:
        download(client, artifact_for(url, data), part, free_space_margin=0)
    assert (e.value.needed, e.value.available) == (6 * MiB, 4 * MiB)
    assert files.served == []
    assert leftovers(small_fs) == ["downloads"]


def test_disk_fills_up_while_downloading(
    small_fs: Path,
    files: FileServer,
    client: httpx.Client,
    explained: Explained,
) -> None:
    data = os.urandom(3 * MiB)
    url = files.add("/a.zip", data)
    part = part_path(small_fs / "downloads", "storagenode", "1.2.3", "linux_amd64")
    filled = threading.Event()

    def another_program_fills_the_disk() -> None:
        fill(small_fs)
        filled.set()

    files.fault(hook_after=MiB, hook=another_program_fills_the_disk)
    with (
        explained,
        pytest.raises(OutOfSpace, match="out of space: cannot write the download") as e,
    ):
        download(client, artifact_for(url, data), part, free_space_margin=0)
    assert e.value.kind == "out_of_space"
    assert filled.wait(10)
    assert not part.exists()  # freed at once: the node shares this disk
    assert leftovers(small_fs) == ["downloads", "filler"]

    (small_fs / "filler").unlink()
    with explained:
        result = download(client, artifact_for(url, data), part, free_space_margin=0)
    assert verify_download(result, artifact_for(url, data)).read_bytes() == data


def test_unpack_larger_than_the_disk_is_refused_up_front(small_fs: Path, tmp_path: Path) -> None:
    # 8 MiB of zeros compress to a few KiB: the declared sizes are what count.
    z = make_zip(tmp_path / "bomb.zip", [("pkg/zeros.bin", bytes(8 * MiB))])
    assert z.stat().st_size < 64 * 1024
    with pytest.raises(OutOfSpace, match=r"unpacking storagenode 1\.2\.3 needs"):
        unpack(z, small_fs / "versions", "storagenode", "1.2.3", free_space_margin=0)
    assert leftovers(small_fs) == ["versions", "versions/storagenode"]


def test_disk_fills_up_while_unpacking(small_fs: Path, tmp_path: Path, good_zip: Path) -> None:
    # 2000 one-byte files pass the estimate (2000 bytes) but take a 4 KiB page each on
    # tmpfs: ENOSPC half-way through, the real error the estimate cannot rule out.
    z = make_zip(tmp_path / "many.zip", [(f"pkg/f{i:04}", b"x") for i in range(2000)])
    with pytest.raises(OutOfSpace, match="out of space: cannot unpack into"):
        unpack(z, small_fs / "versions", "storagenode", "1.2.3", free_space_margin=0)
    assert leftovers(small_fs) == ["versions", "versions/storagenode"]  # .tmp-* removed

    installed = unpack(
        good_zip, small_fs / "versions", "storagenode", "1.2.3", free_space_margin=MiB
    )
    assert (installed.path / "nodekeeper-artifact.json").exists()


def test_read_only_downloads_dir(
    readonly_dir: ReadOnlyDir, files: FileServer, client: httpx.Client, explained: Explained
) -> None:
    data = os.urandom(MiB)
    url = files.add("/a.zip", data)
    part = part_path(readonly_dir.path / "downloads", "storagenode", "1.2.3", "linux_amd64")
    with pytest.raises(ReadOnlyFileSystem, match="read-only file system: cannot create") as e:
        download(client, artifact_for(url, data), part, free_space_margin=0)
    assert e.value.kind == "read_only_filesystem"
    assert leftovers(readonly_dir.path) == []

    readonly_dir.make_writable()
    with explained:
        result = download(client, artifact_for(url, data), part, free_space_margin=0)
    verify_download(result, artifact_for(url, data))


def test_read_only_after_the_directory_exists(
    readonly_dir: ReadOnlyDir, files: FileServer, client: httpx.Client, explained: Explained
) -> None:
    (readonly_dir.source / "downloads").mkdir()  # made while the disk was writable
    data = os.urandom(MiB)
    url = files.add("/a.zip", data)
    part = part_path(readonly_dir.path / "downloads", "storagenode", "1.2.3", "linux_amd64")
    with explained, pytest.raises(ReadOnlyFileSystem, match="cannot write the download"):
        download(client, artifact_for(url, data), part, free_space_margin=0)
    assert leftovers(readonly_dir.path) == ["downloads"]


def test_read_only_versions_dir(readonly_dir: ReadOnlyDir, good_zip: Path) -> None:
    versions = readonly_dir.path / "versions"
    with pytest.raises(ReadOnlyFileSystem, match="cannot create the versions directory"):
        unpack(good_zip, versions, "storagenode", "1.2.3")
    assert leftovers(readonly_dir.path) == []
    readonly_dir.make_writable()
    assert unpack(good_zip, versions, "storagenode", "1.2.3").path.is_dir()
