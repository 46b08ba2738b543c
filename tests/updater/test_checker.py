"""Fetching the announcement: ETag/304, errors with Retry-After, bounded, validated."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from nodekeeper.updater.checker import MAX_DOCUMENT_BYTES, fetch_announcement
from nodekeeper.updater.download import DownloadSettings, make_client
from nodekeeper.updater.errors import AnnouncementInvalid, CheckFailed
from tests.support import free_port

from .httpserver import FileServer

ZERO = "00" * 32


def document(suggested: str = "1.1.0") -> bytes:
    ref: dict[str, Any] = {"version": "1.0.0", "url": "https://cp.example/a/{os}/{arch}"}
    return json.dumps(
        {
            "processes": {
                "storagenode": {
                    "minimum": ref,
                    "suggested": {**ref, "version": suggested},
                    "rollout": {"seed": "", "cursor": ZERO},
                }
            }
        }
    ).encode()


@pytest.fixture
def client() -> httpx.Client:
    # Generous: a loaded CI machine can pause a loopback server for seconds. The stall
    # test makes its own impatient client.
    with make_client(DownloadSettings(connect_timeout=30, read_timeout=30)) as c:
        yield c


def test_etag_then_304_reuses_the_document(files: FileServer, client: httpx.Client) -> None:
    url = files.add("/", document(), etag=True)
    first = fetch_announcement(client, url)
    assert first.etag == files.etags["/"]
    assert not first.not_modified
    assert first.announcement.processes["storagenode"].suggested.version == "1.1.0"
    assert first.body == document()

    second = fetch_announcement(client, url, first)
    assert second.not_modified
    assert second.announcement == first.announcement
    assert files.served[-1].if_none_match == first.etag
    assert files.served[-1].status == 304

    files.add("/", document("1.2.0"), etag=True)
    third = fetch_announcement(client, url, second)
    assert not third.not_modified
    assert third.announcement.processes["storagenode"].suggested.version == "1.2.0"
    assert third.etag != first.etag


def test_no_etag_means_no_conditional_request(files: FileServer, client: httpx.Client) -> None:
    url = files.add("/", document())
    first = fetch_announcement(client, url)
    assert first.etag is None
    fetch_announcement(client, url, first)
    assert files.served[-1].if_none_match is None


@pytest.mark.parametrize(("status", "retry_after"), [(500, None), (503, "120"), (429, "5")])
def test_server_errors_carry_retry_after(
    files: FileServer, client: httpx.Client, status: int, retry_after: str | None
) -> None:
    url = files.add("/", document())
    files.fault(status=status, retry_after=retry_after)
    with pytest.raises(CheckFailed, match=f"answered HTTP {status}") as e:
        fetch_announcement(client, url)
    assert e.value.kind == "check_failed"
    assert e.value.status == status
    assert e.value.retry_after == (float(retry_after) if retry_after else None)


def test_not_found(files: FileServer, client: httpx.Client) -> None:
    with pytest.raises(CheckFailed, match="HTTP 404"):
        fetch_announcement(client, files.url + "/nothing")


def test_unconditional_304_is_an_error(files: FileServer, client: httpx.Client) -> None:
    url = files.add("/", document())
    files.fault(status=304)
    with pytest.raises(CheckFailed, match="304 Not Modified to an unconditional request"):
        fetch_announcement(client, url)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>captive portal</html>", "invalid announcement"),
        (document().replace(b'"1.1.0"', b'"0.9.0"'), "minimum must not exceed"),
        (b'{"processes": {"storagenode": {"minimum": 1}}}', "processes.storagenode"),
    ],
)
def test_invalid_documents(
    files: FileServer, client: httpx.Client, body: bytes, message: str
) -> None:
    url = files.add("/", body)
    with pytest.raises(AnnouncementInvalid, match=message) as e:
        fetch_announcement(client, url)
    assert e.value.kind == "announcement_invalid"


def test_oversized_document_is_not_read_to_the_end(files: FileServer, client: httpx.Client) -> None:
    url = files.add("/", b" " * (8 * MAX_DOCUMENT_BYTES))
    with pytest.raises(AnnouncementInvalid, match="larger than"):
        fetch_announcement(client, url)


def test_stalled_server_times_out(files: FileServer) -> None:
    url = files.add("/", document())
    files.fault(stall_after=10)
    impatient = DownloadSettings(connect_timeout=30, read_timeout=0.5)
    with make_client(impatient) as client, pytest.raises(CheckFailed, match="timed out"):
        fetch_announcement(client, url)


def test_unreachable(client: httpx.Client) -> None:
    with pytest.raises(CheckFailed, match="cannot reach the control plane"):
        fetch_announcement(client, f"http://127.0.0.1:{free_port()}/")
