"""Downloads against a real misbehaving HTTP server on loopback.

Each failure: a typed error, nothing left that could be installed (only a ``.part`` that
is resumed or a deleted file), and the next attempt works.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import httpx
import pytest

from nodekeeper.updater.download import (
    Download,
    DownloadSettings,
    SpeedFloor,
    artifact_file_name,
    download,
    make_client,
    part_path,
)
from nodekeeper.updater.errors import (
    DownloadCancelled,
    DownloadFailed,
    OutOfSpace,
    VerificationFailed,
)
from nodekeeper.updater.verify import verify_download

from .conftest import Tls, artifact_for
from .httpserver import FileServer

DATA = os.urandom(3 * 1024 * 1024 + 12345)
# Generous timeouts for every test that expects an answer (a loaded CI machine can pause
# a loopback server for seconds); the stall test makes its own client with a short one.
SETTINGS = DownloadSettings(connect_timeout=30.0, read_timeout=30.0, free_space_margin=0)
STALL_READ_TIMEOUT = 0.5


@pytest.fixture
def client() -> httpx.Client:
    with make_client(SETTINGS) as c:
        yield c


@pytest.fixture
def part(tmp_path: Path) -> Path:
    return part_path(tmp_path / "downloads", "storagenode", "1.2.3", "linux_amd64")


def fetch(client: httpx.Client, url: str, part: Path, data: bytes = DATA, **kw) -> Download:
    return download(client, artifact_for(url, data), part, free_space_margin=0, **kw)


def test_names() -> None:
    assert artifact_file_name("storagenode", "1.2.3", "linux_amd64") == (
        "storagenode-1.2.3-linux_amd64.zip"
    )
    assert part_path(Path("/d"), "storagenode", "1.2.3", "linux_amd64") == Path(
        "/d/storagenode-1.2.3-linux_amd64.zip.part"
    )


def test_plain_download_and_verify(files: FileServer, client: httpx.Client, part: Path) -> None:
    url = files.add("/a.zip", DATA)
    result = fetch(client, url, part)
    assert (result.size, result.resumed_from, result.fetched) == (len(DATA), 0, len(DATA))
    final = verify_download(result, artifact_for(url, DATA))
    assert final.name == "storagenode-1.2.3-linux_amd64.zip"
    assert final.read_bytes() == DATA
    assert not part.exists()
    (request,) = files.served
    assert request.range is None
    assert request.headers["Accept-Encoding"] == "identity"


def test_cut_mid_body_then_resume_fetches_only_the_rest(
    files: FileServer, client: httpx.Client, part: Path
) -> None:
    url = files.add("/a.zip", DATA)
    half = len(DATA) // 2
    files.fault(close_after=half)
    with pytest.raises(DownloadFailed) as info:
        fetch(client, url, part)
    assert info.value.kind == "download_failed"
    assert info.value.resumable
    assert "the next attempt resumes" in str(info.value)
    kept = part.stat().st_size
    assert kept == half == info.value.received
    assert part.read_bytes() == DATA[:kept]

    result = fetch(client, url, part)
    assert (result.resumed_from, result.fetched) == (kept, len(DATA) - kept)
    assert files.served[-1].range == f"bytes={kept}-"
    assert files.served[-1].status == 206
    assert files.served[-1].sent == len(DATA) - kept
    assert verify_download(result, artifact_for(url, DATA)).read_bytes() == DATA


def test_http_500_with_retry_after(files: FileServer, client: httpx.Client, part: Path) -> None:
    url = files.add("/a.zip", DATA)
    files.fault(status=500, retry_after="7")
    with pytest.raises(DownloadFailed, match="HTTP 500") as info:
        fetch(client, url, part)
    assert (info.value.status, info.value.retry_after) == (500, 7.0)
    assert not part.exists()
    assert fetch(client, url, part).size == len(DATA)


def test_500_during_resume_keeps_the_partial_file(
    files: FileServer, client: httpx.Client, part: Path
) -> None:
    url = files.add("/a.zip", DATA)
    files.fault(close_after=1_000_000)
    files.fault(status=503)
    for _ in range(2):
        with pytest.raises(DownloadFailed):
            fetch(client, url, part)
        assert part.stat().st_size == 1_000_000
    result = fetch(client, url, part)
    assert (result.resumed_from, result.fetched) == (1_000_000, len(DATA) - 1_000_000)


def test_stall_past_the_read_timeout(files: FileServer, client: httpx.Client, part: Path) -> None:
    url = files.add("/a.zip", DATA)
    files.fault(stall_after=500_000, stall_seconds=120)
    started = time.monotonic()
    short = DownloadSettings(connect_timeout=30.0, read_timeout=STALL_READ_TIMEOUT)
    with (
        make_client(short) as impatient,
        pytest.raises(DownloadFailed, match="stalled after 500000 of"),
    ):
        fetch(impatient, url, part)
    assert time.monotonic() - started < 60  # the read timeout (0.5 s), not the stall (120 s)
    assert part.stat().st_size == 500_000
    result = fetch(client, url, part)
    assert result.resumed_from == 500_000
    verify_download(result, artifact_for(url, DATA))


def test_more_bytes_than_announced_in_content_length(
    files: FileServer, client: httpx.Client, part: Path
) -> None:
    url = files.add("/a.zip", DATA)
    files.fault(extra=b"x" * 1000)
    expected = f"is {len(DATA) + 1000} bytes, the announcement says {len(DATA)}"
    with pytest.raises(VerificationFailed, match=expected):
        fetch(client, url, part)
    assert not part.exists()
    assert fetch(client, url, part).size == len(DATA)


def test_endless_body_is_cut_at_the_announced_size(
    files: FileServer, client: httpx.Client, part: Path
) -> None:
    url = files.add("/a.zip", DATA)
    files.fault(extra=bytes(64 * 1024 * 1024), no_length=True)
    with pytest.raises(VerificationFailed, match="more than the announced") as info:
        fetch(client, url, part)
    assert info.value.kind == "verification_failed"
    assert not part.exists()
    # The client hung up; only socket buffers' worth went past the announced size.
    assert files.served[0].sent < len(DATA) + 32 * 1024 * 1024
    assert fetch(client, url, part).size == len(DATA)


def test_body_ended_by_close_short_of_the_size_is_resumable(
    files: FileServer, client: httpx.Client, part: Path
) -> None:
    url = files.add("/a.zip", DATA)
    files.fault(no_length=True, close_after=700_000)
    with pytest.raises(DownloadFailed, match="after 700000 of"):
        fetch(client, url, part)
    assert fetch(client, url, part).resumed_from == 700_000


def test_server_ignoring_range_restarts_from_zero_on_the_same_response(
    files: FileServer, client: httpx.Client, part: Path
) -> None:
    url = files.add("/a.zip", DATA)
    files.fault(close_after=1_000_000)
    with pytest.raises(DownloadFailed):
        fetch(client, url, part)
    files.fault(ignore_range=True)
    result = fetch(client, url, part)
    assert (result.resumed_from, result.fetched) == (0, len(DATA))
    assert files.served[-1].status == 200
    verify_download(result, artifact_for(url, DATA))


@pytest.mark.parametrize("lie", [{"range_total": len(DATA) + 1}, {"range_start": 10}])
def test_inconsistent_range_answer_starts_over(
    files: FileServer, client: httpx.Client, part: Path, lie: dict[str, int]
) -> None:
    url = files.add("/a.zip", DATA)
    files.fault(close_after=1_000_000)
    with pytest.raises(DownloadFailed):
        fetch(client, url, part)
    files.fault(**lie)
    result = fetch(client, url, part)
    assert (result.resumed_from, result.fetched) == (0, len(DATA))
    assert [s.range for s in files.served[-2:]] == ["bytes=1000000-", None]
    verify_download(result, artifact_for(url, DATA))


def test_server_copy_shorter_than_announced_is_refused_not_resumed_forever(
    files: FileServer, client: httpx.Client, part: Path
) -> None:
    short = DATA[:1_000_000]
    url = files.add("/a.zip", short)
    part.parent.mkdir(parents=True)
    part.write_bytes(short)  # as long as the server's whole file: its Range gets a 416
    with pytest.raises(VerificationFailed, match=r"server's copy .* is 1000000 bytes"):
        fetch(client, url, part, data=DATA)
    assert [(s.range, s.status) for s in files.served] == [("bytes=1000000-", 416), (None, 200)]
    assert not part.exists()


def test_damaged_partial_file_is_caught_and_the_next_attempt_works(
    files: FileServer, client: httpx.Client, part: Path
) -> None:
    url = files.add("/a.zip", DATA)
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\0" * 1_000_000)  # e.g. zeros after a power cut
    result = fetch(client, url, part)
    assert result.resumed_from == 1_000_000
    with pytest.raises(VerificationFailed, match="has sha256"):
        verify_download(result, artifact_for(url, DATA))
    assert not part.exists()
    result = fetch(client, url, part)
    verify_download(result, artifact_for(url, DATA))


def test_partial_longer_than_the_artifact_is_dropped(
    files: FileServer, client: httpx.Client, part: Path
) -> None:
    url = files.add("/a.zip", DATA)
    part.parent.mkdir(parents=True)
    part.write_bytes(DATA + b"junk")
    result = fetch(client, url, part)
    assert (result.resumed_from, result.fetched) == (0, len(DATA))


def test_complete_partial_needs_no_request(
    files: FileServer, client: httpx.Client, part: Path
) -> None:
    url = files.add("/a.zip", DATA)
    part.parent.mkdir(parents=True)
    part.write_bytes(DATA)
    result = fetch(client, url, part)
    assert (result.resumed_from, result.fetched) == (len(DATA), 0)
    assert files.served == []
    verify_download(result, artifact_for(url, DATA))


def test_tampered_artifact_same_size(files: FileServer, client: httpx.Client, part: Path) -> None:
    tampered = bytearray(DATA)
    tampered[12345] ^= 0xFF
    url = files.add("/a.zip", bytes(tampered))
    result = fetch(client, url, part)
    with pytest.raises(VerificationFailed, match="corrupted or tampered") as info:
        verify_download(result, artifact_for(url, DATA))
    assert info.value.expected == artifact_for(url, DATA).sha256
    assert not part.exists()
    assert not part.with_suffix("").exists()
    files.add("/a.zip", DATA)  # the CDN is fixed
    verify_download(fetch(client, url, part), artifact_for(url, DATA))


def test_cancel_keeps_the_partial_for_resume(
    files: FileServer, client: httpx.Client, part: Path
) -> None:
    url = files.add("/a.zip", DATA)
    cancel = threading.Event()
    seen: list[int] = []

    def progress(have: int, total: int) -> None:
        seen.append(have)
        if have >= 1_000_000:
            cancel.set()

    with pytest.raises(DownloadCancelled) as info:
        fetch(client, url, part, cancel=cancel, progress=progress)
    assert info.value.kind == "download_cancelled"
    kept = part.stat().st_size
    assert kept == seen[-1] >= 1_000_000
    result = fetch(client, url, part)
    assert result.resumed_from == kept
    verify_download(result, artifact_for(url, DATA))


def test_connection_refused(client: httpx.Client, part: Path) -> None:
    from tests.support import free_port

    with pytest.raises(DownloadFailed, match="failed after 0 of"):
        fetch(client, f"http://127.0.0.1:{free_port()}/a.zip", part)
    assert not part.exists()


def test_not_enough_space_is_refused_before_any_request(
    files: FileServer, client: httpx.Client, part: Path
) -> None:
    url = files.add("/a.zip", DATA)
    with pytest.raises(OutOfSpace, match=r"needs .* MiB free in") as info:
        download(client, artifact_for(url, DATA), part, free_space_margin=10**18)
    assert info.value.kind == "out_of_space"
    assert info.value.needed == 10**18 + len(DATA)
    assert files.served == []


def test_tls_with_the_configured_ca_bundle(tls: Tls, part: Path) -> None:
    with FileServer(tls=tls.server) as server:
        url = server.add("/a.zip", DATA)
        settings = DownloadSettings(read_timeout=30.0, ca_bundle=tls.cert)
        with make_client(settings) as c:
            verify_download(fetch(c, url, part), artifact_for(url, DATA))


def test_tls_certificate_not_trusted(tls: Tls, part: Path) -> None:
    with FileServer(tls=tls.server) as server, make_client(SETTINGS) as c:
        url = server.add("/a.zip", DATA)
        with pytest.raises(DownloadFailed, match="CERTIFICATE_VERIFY_FAILED"):
            fetch(c, url, part)
        assert server.bytes_sent() == 0
    assert not part.exists()


def test_missing_ca_bundle_is_a_clear_config_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot load the CA bundle"):
        make_client(DownloadSettings(ca_bundle=tmp_path / "nope.pem"))


def test_proxy_from_the_environment(
    files: FileServer, part: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files.add("/a.zip", DATA)
    monkeypatch.setenv("HTTP_PROXY", files.url)
    # The name does not resolve: only the proxy can answer.
    url = "http://artifacts.nodekeeper.invalid/a.zip"
    with make_client(SETTINGS) as c:
        verify_download(fetch(c, url, part), artifact_for(url, DATA))
    (request,) = files.served
    assert request.proxied


def test_speed_floor_is_pure() -> None:
    floor = SpeedFloor(bytes_per_second=100, window=10)
    assert not floor.too_slow(0, 9.9)  # a window is not over yet
    assert floor.too_slow(999, 10)
    assert not floor.too_slow(1000, 10)
    assert floor.too_slow(1, 60)


def test_a_trickling_server_is_given_up_and_resumed(
    files: FileServer, client: httpx.Client, part: Path
) -> None:
    url = files.add("/slow.zip", DATA)
    files.rate = 400_000  # bytes/s: each 64 KiB chunk arrives well inside the read timeout
    floor = SpeedFloor(bytes_per_second=1_000_000, window=0.5)
    with pytest.raises(DownloadFailed, match="too slow") as info:
        fetch(client, url, part, speed_floor=floor)
    kept = part.stat().st_size  # given up part-way: the whole trickle would take 7.5 s
    assert 0 < kept < len(DATA) and info.value.received == kept
    files.rate = None
    result = fetch(client, url, part, speed_floor=floor)
    assert result.resumed_from == kept
    verify_download(result, artifact_for(url, DATA))
