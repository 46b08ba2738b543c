"""The fetch path with a trusted root (decision 085), below the state machine: what is a
network failure (retried like any download failure) and what is a refusal, the fetcher's
manners on the wire, and no kept zip reused without the signature check. Real TUF
metadata (tuf_repository.py) on a real loopback server."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from nodekeeper.updater.download import DownloadSettings, make_client, part_path
from nodekeeper.updater.errors import DownloadFailed, SignatureCheckFailed
from nodekeeper.updater.fetch import fetch_verified
from nodekeeper.updater.trust import SignedRelease, TrustSettings

from .conftest import artifact_for
from .httpserver import FileServer
from .tuf_repository import Repository

pytestmark = pytest.mark.timeout(60)

DATA = os.urandom(256 * 1024)
PLATFORM = "linux_amd64"


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with make_client(DownloadSettings(connect_timeout=5, read_timeout=5)) as c:
        yield c


@pytest.fixture
def repo(files: FileServer) -> Repository:
    return Repository(files)


def release(repo: Repository, tmp_path: Path, version: str = "1.2.3") -> SignedRelease:
    trust = TrustSettings(
        repo.write_trusted_root(tmp_path / "root.json"), repo.url, tmp_path / "state" / "tuf"
    )
    return SignedRelease(trust, "storagenode", version, PLATFORM)


def part(tmp_path: Path) -> Path:
    return part_path(tmp_path / "downloads", "storagenode", "1.2.3", PLATFORM)


def test_a_signed_artifact_is_fetched_and_the_metadata_asked_for_raw_bytes(
    files: FileServer, repo: Repository, client: httpx.Client, tmp_path: Path
) -> None:
    repo.sign_release("storagenode", "1.2.3", PLATFORM, DATA)
    url = files.add("/a.zip", DATA)
    final = fetch_verified(
        client, artifact_for(url, DATA), part(tmp_path), signed=release(repo, tmp_path)
    )
    assert final.read_bytes() == DATA
    metadata = [s for s in files.served if s.path.startswith("/tuf/metadata/")]
    # The whole client workflow: no newer root (404), then timestamp, snapshot, targets.
    assert [s.path.rsplit("/", 1)[1] for s in metadata] == [
        "2.root.json",
        "timestamp.json",
        "2.snapshot.json",  # the repository's first publish was version 1
        "2.targets.json",
    ]
    assert all(s.headers.get("Accept-Encoding") == "identity" for s in metadata)


def test_metadata_that_cannot_be_fetched_is_a_download_failure_not_a_refusal(
    files: FileServer, repo: Repository, client: httpx.Client, tmp_path: Path
) -> None:
    repo.sign_release("storagenode", "1.2.3", PLATFORM, DATA)
    artifact = artifact_for(files.add("/a.zip", DATA), DATA)
    signed = release(repo, tmp_path)
    # A server error on the root lookup (only 403/404 mean "no newer root").
    files.fault(status=503)
    with pytest.raises(DownloadFailed) as failed:
        fetch_verified(client, artifact, part(tmp_path), signed=signed)
    assert failed.value.status == 503 and "answered HTTP 503" in str(failed.value)
    # A control plane without TUF metadata: a 404 on timestamp.json.
    files.files.pop("/tuf/metadata/timestamp.json")
    with pytest.raises(DownloadFailed) as failed:
        fetch_verified(client, artifact, part(tmp_path), signed=signed)
    assert failed.value.status == 404 and "timestamp.json" in str(failed.value)
    assert not isinstance(failed.value, SignatureCheckFailed)
    assert not part(tmp_path).parent.exists()  # nothing downloaded


def test_a_stalling_metadata_server_ends_at_the_request_deadline(
    files: FileServer, repo: Repository, tmp_path: Path
) -> None:
    repo.sign_release("storagenode", "1.2.3", PLATFORM, DATA)
    artifact = artifact_for(files.add("/a.zip", DATA), DATA)
    files.fault(status=404)  # no newer root
    files.fault(stall_after=10, stall_seconds=30)  # timestamp.json: 10 bytes, then silence
    settings = DownloadSettings(connect_timeout=5, read_timeout=20, request_deadline=1.0)
    began = time.monotonic()
    with make_client(settings) as client, pytest.raises(DownloadFailed) as failed:
        fetch_verified(client, artifact, part(tmp_path), signed=release(repo, tmp_path))
    assert time.monotonic() - began < 15  # the deadline, not the 20 s read timeout
    assert "did not finish within 1 s" in str(failed.value)


def test_a_verified_zip_kept_from_before_is_not_reused_unless_signed(
    files: FileServer, repo: Repository, client: httpx.Client, tmp_path: Path
) -> None:
    # A keeper without a trusted root downloaded and verified this zip (sha256 only);
    # then the operator set trusted_root. The kept zip is not installed unchecked.
    url = files.add("/a.zip", DATA)
    kept = fetch_verified(client, artifact_for(url, DATA), part(tmp_path))
    with pytest.raises(SignatureCheckFailed) as refused:
        fetch_verified(
            client, artifact_for(url, DATA), part(tmp_path), signed=release(repo, tmp_path)
        )
    assert refused.value.check == "not_signed"
    assert refused.value.report_details() == {"check": "not_signed", "role": "targets"}
    assert kept.exists()  # still there for a later signed release of the same bytes
    repo.sign_release("storagenode", "1.2.3", PLATFORM, DATA)
    served = len(files.served)
    assert (
        fetch_verified(
            client, artifact_for(url, DATA), part(tmp_path), signed=release(repo, tmp_path)
        )
        == kept
    )
    assert all(s.path != "/a.zip" for s in files.served[served:])  # reused, not fetched


def test_an_unreadable_trusted_root_refuses_instead_of_installing_unsigned(
    files: FileServer, repo: Repository, client: httpx.Client, tmp_path: Path
) -> None:
    signed = release(repo, tmp_path)
    signed.trust.trusted_root.write_text("{}")  # e.g. damaged on disk since the start
    with pytest.raises(SignatureCheckFailed) as refused:
        fetch_verified(
            client, artifact_for(files.add("/a.zip", DATA), DATA), part(tmp_path), signed=signed
        )
    assert refused.value.check == "trusted_root"
    assert "not a valid, self-signed TUF root" in str(refused.value)
