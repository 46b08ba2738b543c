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

from .errors import AnnouncementInvalid, CheckFailed

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
) -> FetchedAnnouncement:
    """GET ``url`` (the control plane's ``/``), conditionally on ``previous``'s ETag.

    Raises CheckFailed (network error, timeout, HTTP status other than 200/304, with
    ``retry_after`` from the header for 429/503) or AnnouncementInvalid (the body is too
    large, not JSON, or fails the schema).
    """
    headers = {"Accept": "application/json"}
    if previous is not None and previous.etag:
        headers["If-None-Match"] = previous.etag
    try:
        with client.stream("GET", url, headers=headers) as response:
            if response.status_code == 304:
                if previous is None:
                    raise CheckFailed(
                        f"{url} answered 304 Not Modified to an unconditional request",
                        status=304,
                    )
                return FetchedAnnouncement(
                    previous.announcement, previous.body, previous.etag, not_modified=True
                )
            if response.status_code != 200:
                retry_after = parse_retry_after(response.headers.get("Retry-After"), clock())
                raise CheckFailed(
                    f"the control plane at {url} answered HTTP {response.status_code}",
                    status=response.status_code,
                    retry_after=retry_after,
                )
            body = _read_capped(response, url)
            etag = response.headers.get("ETag")
    except httpx.TimeoutException as exc:
        raise CheckFailed(f"the control plane at {url} timed out ({_describe(exc)})") from None
    except httpx.HTTPError as exc:
        raise CheckFailed(f"cannot reach the control plane at {url}: {_describe(exc)}") from None
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


def _read_capped(response: httpx.Response, url: str) -> bytes:
    chunks: list[bytes] = []
    total = 0
    for chunk in response.iter_bytes():
        total += len(chunk)
        if total > MAX_DOCUMENT_BYTES:
            raise AnnouncementInvalid(
                f"the announcement at {url} is larger than {MAX_DOCUMENT_BYTES} bytes; "
                "refusing to read further",
                status=200,
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _describe(exc: httpx.HTTPError) -> str:
    return str(exc) or type(exc).__name__
