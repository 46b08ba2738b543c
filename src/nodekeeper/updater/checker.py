"""Fetching the announcement: one conditional GET, validated, the last copy reused on 304.

The control plane makes its ETag once per change and answers ``If-None-Match`` with an
empty 304, so a keeper that checks every 15 minutes costs it almost nothing while
nothing changes. Fetching is kept apart from deciding (``plan.py``, pure): this module
only turns HTTP into either a validated ``Announcement`` or a typed ``CheckFailed``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from pydantic import ValidationError

from nodekeeper.backoff import parse_retry_after
from nodekeeper.version.schema import Announcement, parse_announcement

from .bounded_decode import (
    ACCEPTED_ENCODINGS,
    BoundedDecoder,
    CorruptEncoding,
    TooLarge,
    UnsupportedEncoding,
)
from .errors import AnnouncementInvalid, CheckFailed
from .netabort import (
    DEFAULT_REQUEST_DEADLINE,
    KEEPER_SHUTDOWN,
    Deadline,
    KeeperStopping,
    NetworkAbort,
)

# The document is a few KiB per process; a body far beyond that is a broken or hostile
# server, and reading it unbounded would let it fill the keeper's memory.
MAX_DOCUMENT_BYTES = 1024 * 1024


@dataclass(frozen=True)
class FetchedAnnouncement:
    """A validated document, its raw bytes (for a cache on disk) and its ETag.
    ``not_modified`` is True when this check was a 304 and the previous copy is reused."""

    announcement: Announcement
    body: bytes
    etag: str | None
    not_modified: bool = False


def fetch_announcement(
    client: httpx.Client,
    url: str,
    previous: FetchedAnnouncement | None = None,
    *,
    clock: Callable[[], float] = time.time,
    deadline: float | None = None,
) -> FetchedAnnouncement:
    """GET ``url`` (the control plane's ``/``), conditionally on ``previous``'s ETag.

    The whole request (connect, headers, body) must finish within ``deadline`` seconds
    (default: the client's ``request_deadline``, see ``download.make_client``); the
    socket is shut down when it passes, so even a server that sends one byte per read
    timeout cannot hold a check longer. A client from ``make_client`` also ends the
    request at once when the keeper stops (``netabort.KEEPER_SHUTDOWN``).

    Raises CheckFailed (network error, timeout, deadline, the keeper stopping, HTTP
    status other than 200/304, with ``retry_after`` from the header for 429/503) or
    AnnouncementInvalid (the body is too large, decoded or not, not JSON, or fails the
    schema).
    """
    seconds = deadline if deadline is not None else request_deadline_of(client)
    headers = {"Accept": "application/json", "Accept-Encoding": ACCEPTED_ENCODINGS}
    if previous is not None and previous.etag:
        headers["If-None-Match"] = previous.etag
    limit = Deadline(seconds)
    try:
        with limit.running() as guard:
            body, etag, not_modified = _get(client, url, headers, guard, seconds, clock)
    except httpx.TimeoutException as exc:
        raise CheckFailed(f"the control plane at {url} timed out ({_describe(exc)})") from None
    except httpx.HTTPError as exc:
        raise _network_failure(client, url, exc, limit, seconds) from None
    if not_modified:
        if previous is None:
            raise CheckFailed(
                f"{url} answered 304 Not Modified to an unconditional request", status=304
            )
        return FetchedAnnouncement(
            previous.announcement, previous.body, previous.etag, not_modified=True
        )
    try:
        announcement = parse_announcement(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "document"
        raise AnnouncementInvalid(
            f"the control plane at {url} sent an invalid announcement "
            f"({exc.error_count()} problem(s); first: {where}: {first.get('msg')})",
            status=200,
        ) from None
    return FetchedAnnouncement(announcement, body, etag)


def request_deadline_of(client: httpx.Client) -> float:
    """The whole-request deadline a client was made with (``download.make_client``)."""
    return float(getattr(client, "request_deadline", DEFAULT_REQUEST_DEADLINE))


def _get(
    client: httpx.Client,
    url: str,
    headers: dict[str, str],
    guard: NetworkAbort,
    seconds: float,
    clock: Callable[[], float],
) -> tuple[bytes, str | None, bool]:
    """(body, ETag, not modified); raises httpx errors and CheckFailed."""
    ends = time.monotonic() + seconds
    with client.stream("GET", url, headers=headers, extensions={"trace": guard.trace}) as response:
        guard.watch_response(response)
        if response.status_code == 304:
            return b"", None, True
        if response.status_code != 200:
            retry_after = parse_retry_after(response.headers.get("Retry-After"), clock())
            raise CheckFailed(
                f"the control plane at {url} answered HTTP {response.status_code}",
                status=response.status_code,
                retry_after=retry_after,
            )
        body = _read_capped(response, url, ends, seconds)
        return body, response.headers.get("ETag"), False


def _read_capped(response: httpx.Response, url: str, ends: float, seconds: float) -> bytes:
    """The decoded body, refused as soon as the raw or the decoded size passes the cap;
    decoding is bounded per step (``bounded_decode``), so a gzip bomb costs no memory."""
    too_large = AnnouncementInvalid(
        f"the announcement at {url} is larger than {MAX_DOCUMENT_BYTES} bytes "
        "(decoded); refusing to read further",
        status=200,
    )
    try:
        decoder = BoundedDecoder(response.headers.get("Content-Encoding"), MAX_DOCUMENT_BYTES)
    except UnsupportedEncoding as exc:
        raise AnnouncementInvalid(f"the control plane at {url} sent {exc}", status=200) from None
    received = 0
    try:
        for chunk in response.iter_raw():
            # The timer shuts the socket at the deadline; this catches a server that keeps
            # a pooled connection (registered late) just inside the read timeout.
            if time.monotonic() > ends:
                raise _deadline_failure(url, seconds)
            received += len(chunk)
            if received > MAX_DOCUMENT_BYTES:
                raise too_large
            decoder.feed(chunk)
        return decoder.finish()
    except TooLarge:
        raise too_large from None
    except CorruptEncoding as exc:
        raise AnnouncementInvalid(f"the control plane at {url} sent {exc}", status=200) from None


def _network_failure(
    client: httpx.Client, url: str, exc: httpx.HTTPError, limit: Deadline, seconds: float
) -> CheckFailed:
    if limit.expired:
        return _deadline_failure(url, seconds)
    stopping = getattr(client, "abort", KEEPER_SHUTDOWN)
    if isinstance(exc, KeeperStopping) or (isinstance(stopping, NetworkAbort) and stopping.aborted):
        return CheckFailed(f"the check of {url} was cut short: the keeper is stopping")
    return CheckFailed(f"cannot reach the control plane at {url}: {_describe(exc)}")


def _deadline_failure(url: str, seconds: float) -> CheckFailed:
    return CheckFailed(
        f"the control plane at {url} did not finish answering within {seconds:g} s "
        "(update.request_deadline_seconds); the next check tries again"
    )


def _describe(exc: httpx.HTTPError) -> str:
    return str(exc) or type(exc).__name__
