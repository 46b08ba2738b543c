"""fetch_verified (reuse, resume, re-fetch) and pruning the downloads directory."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from nodekeeper.updater.download import DownloadSettings, make_client, part_path
from nodekeeper.updater.errors import VerificationFailed
from nodekeeper.updater.fetch import fetch_verified, prune_downloads

from .conftest import artifact_for
from .httpserver import FileServer

DATA = os.urandom(1024 * 1024)


@pytest.fixture
def client() -> httpx.Client:
    with make_client(DownloadSettings(connect_timeout=30, read_timeout=30)) as c:
        yield c


@pytest.fixture
def part(tmp_path: Path) -> Path:
    return part_path(tmp_path / "downloads", "storagenode", "1.2.3", "linux_amd64")


def test_fetch_then_reuse_without_a_request(
    files: FileServer, client: httpx.Client, part: Path
) -> None:
    url = files.add("/a.zip", DATA)
    final = fetch_verified(client, artifact_for(url, DATA), part, free_space_margin=0)
    assert final.read_bytes() == DATA
    assert fetch_verified(client, artifact_for(url, DATA), part, free_space_margin=0) == final
    assert len(files.served) == 1


def test_damaged_verified_zip_is_fetched_again(
    files: FileServer, client: httpx.Client, part: Path
) -> None:
    url = files.add("/a.zip", DATA)
    final = fetch_verified(client, artifact_for(url, DATA), part, free_space_margin=0)
    final.write_bytes(DATA[:-1] + b"\0")  # e.g. a disk error since the last cycle
    assert fetch_verified(client, artifact_for(url, DATA), part, free_space_margin=0) == final
    assert final.read_bytes() == DATA
    assert len(files.served) == 2


def test_tampered_download_raises_and_leaves_nothing(
    files: FileServer, client: httpx.Client, part: Path
) -> None:
    url = files.add("/a.zip", DATA[::-1])
    with pytest.raises(VerificationFailed):
        fetch_verified(client, artifact_for(url, DATA), part, free_space_margin=0)
    assert list(part.parent.iterdir()) == []


def test_prune_downloads(tmp_path: Path) -> None:
    d = tmp_path / "downloads"
    d.mkdir()
    for name in ("a.zip", "b.zip.part", "c.zip"):
        (d / name).write_bytes(b"x")
    (d / "subdir").mkdir()
    assert prune_downloads(d, keep=[d / "c.zip"]) == []
    assert sorted(p.name for p in d.iterdir()) == ["c.zip", "subdir"]
    assert prune_downloads(tmp_path / "missing") == []
