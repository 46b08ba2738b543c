"""A control plane that answers one byte at a time, each inside the read timeout.

The read timeout is per read, so without a whole-request deadline a 4 KiB answer can take
as long as the server likes; and a blocked read in a worker thread must end at once when
the keeper stops (the socket is shut down), for checks and downloads alike. Real servers
on loopback, real sockets, real threads; deadlines generous for a loaded machine.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from nodekeeper.updater.checker import fetch_announcement
from nodekeeper.updater.download import DownloadSettings, download, make_client
from nodekeeper.updater.errors import CheckFailed, DownloadCancelled
from nodekeeper.updater.netabort import NetworkAbort
from nodekeeper.version.schema import Artifact

from .trickle import trickling

pytestmark = pytest.mark.timeout(120)

# A 4 KiB answer at one byte per 50 ms takes 205 s: far beyond every bound asserted here.
SLOW = 0.05


def settings(**kw: object) -> DownloadSettings:
    base: dict[str, object] = {"connect_timeout": 5.0, "read_timeout": 5.0}
    return DownloadSettings(**{**base, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize("headers_first", [True, False], ids=["body", "headers-too"])
def test_a_trickled_announcement_ends_at_the_request_deadline(headers_first: bool) -> None:
    with (
        trickling(interval=SLOW, headers_first=headers_first) as server,
        make_client(settings(request_deadline=1.5)) as client,
    ):
        began = time.monotonic()
        with pytest.raises(CheckFailed, match=r"did not finish answering within 1.5 s"):
            fetch_announcement(client, server.url + "/")
        took = time.monotonic() - began
    assert took >= 1.5
    # The deadline, plus room for a loaded machine; nowhere near the 205 s of the answer.
    assert took < 30
    assert server.bytes_sent < 4096


def test_the_deadline_is_a_client_setting_and_a_call_argument() -> None:
    with trickling(interval=SLOW) as server, make_client(settings()) as client:
        assert client.request_deadline == 60.0  # the documented default
        began = time.monotonic()
        with pytest.raises(CheckFailed, match="within 1 s"):
            fetch_announcement(client, server.url + "/", deadline=1.0)
        assert time.monotonic() - began < 30


def run_in_thread(target: object) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def body() -> None:
        try:
            target()  # type: ignore[operator]
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread, errors


@pytest.mark.parametrize("silent", [False, True], ids=["trickling", "silent"])
def test_stopping_the_keeper_ends_a_blocked_check_at_once(silent: bool) -> None:
    """The worker thread's read is woken by the socket shutdown: it does not wait for the
    next byte, the read timeout (60 s here) or the deadline (10 min here)."""
    abort = NetworkAbort()
    slow = settings(read_timeout=60.0, request_deadline=600.0, abort=abort)
    with trickling(interval=SLOW, silent_body=silent) as server, make_client(slow) as client:
        thread, errors = run_in_thread(lambda: fetch_announcement(client, server.url + "/"))
        server.wait_in_flight()
        began = time.monotonic()
        abort.abort("the keeper is stopping")
        thread.join(30)
        took = time.monotonic() - began
        assert not thread.is_alive()
    assert took < 10
    assert len(errors) == 1 and isinstance(errors[0], CheckFailed)
    assert "the keeper is stopping" in str(errors[0])


def test_a_check_begun_after_the_stop_is_not_sent() -> None:
    abort = NetworkAbort()
    abort.abort("the keeper is stopping")
    with trickling() as server, make_client(settings(abort=abort)) as client:
        with pytest.raises(CheckFailed, match="the keeper is stopping"):
            fetch_announcement(client, server.url + "/")
        assert server.requests == 0


def test_stopping_the_keeper_ends_a_stalled_download_at_once(tmp_path: Path) -> None:
    """A download blocked on a silent server (read timeout 60 s) ends as cancelled, its
    partial file kept for the next attempt."""
    abort = NetworkAbort()
    body = b"x" * 4096
    with (
        trickling(body=body, interval=SLOW) as server,
        make_client(settings(read_timeout=60.0, abort=abort)) as client,
    ):
        artifact = Artifact(url=server.url + "/a.zip", sha256="0" * 64, size=len(body))
        part = tmp_path / "a.zip.part"
        thread, errors = run_in_thread(lambda: download(client, artifact, part))
        server.wait_in_flight()
        began = time.monotonic()
        abort.abort("the keeper is stopping")
        thread.join(30)
        took = time.monotonic() - began
        assert not thread.is_alive()
    assert took < 10
    assert len(errors) == 1 and isinstance(errors[0], DownloadCancelled), errors
    assert part.exists()
