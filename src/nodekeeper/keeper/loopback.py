"""Minimal HTTP/1.1 over asyncio streams, for loopback only: the pulse probe, the node's
shutdown endpoint, and the keeper's own status API.

Why not httpx/uvicorn here: these talk to 127.0.0.1 with one request per connection and
tiny bodies, and the keeper must idle at <= 40 MB RSS on a home PC; httpx alone adds
~12 MB to the process. Internet-facing HTTP (the updater's downloads) does use httpx.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_BODY = 1024 * 1024
MAX_HEADER_LINES = 100


log = logging.getLogger("nodekeeper.keeper")


class HTTPError(Exception):
    """The request could not be made or the answer was not HTTP."""


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes


async def request(
    method: str,
    url: str,
    *,
    timeout: float,
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
) -> Response:
    """One request, one connection (``Connection: close``); raises :class:`HTTPError`."""
    try:
        return await asyncio.wait_for(_request(method, url, headers or {}, body), timeout)
    except TimeoutError:
        raise HTTPError(f"no answer within {timeout:g} s") from None
    except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        raise HTTPError(str(exc) or type(exc).__name__) from None


async def _request(method: str, url: str, headers: Mapping[str, str], body: bytes) -> Response:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"only http:// URLs are supported here, not {url!r}")
    port = parts.port or 80
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    reader, writer = await asyncio.open_connection(parts.hostname, port)
    try:
        lines = [
            f"{method} {target} HTTP/1.1",
            f"Host: {parts.netloc}",
            "Connection: close",
            f"Content-Length: {len(body)}",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()
        status_line = await reader.readline()
        fields = status_line.split(None, 2)
        if len(fields) < 2 or not fields[0].startswith(b"HTTP/") or not fields[1].isdigit():
            raise ValueError(f"not an HTTP response: {status_line[:80]!r}")
        length = None
        for _ in range(MAX_HEADER_LINES):
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if length is not None:
            data = await reader.readexactly(min(length, MAX_BODY))
        else:
            data = await reader.read(MAX_BODY)
        return Response(int(fields[1]), data)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


# -- server ------------------------------------------------------------------------------

# A request's head and body must arrive within this long, and its body may be this big:
# the actions' JSON bodies are a few hundred bytes, and a client that trickles or floods
# must not hold the keeper's loop or memory.
REQUEST_DEADLINE_SECONDS = 5.0
MAX_REQUEST_BODY = 64 * 1024


@dataclass(frozen=True)
class Request:
    """One request as the handler sees it: header names lower-case, the query dropped."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes


Handler = Callable[[Request], Awaitable[tuple[int, str, bytes]]]
"""request → (status, content type, body)."""

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    411: "Length Required",
    413: "Content Too Large",
    500: "Internal Server Error",
    504: "Gateway Timeout",
}


class _Refused(Exception):
    """The request is refused before the handler sees it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def _read_request(reader: asyncio.StreamReader) -> Request:
    line = await reader.readline()
    parts = line.decode("latin-1").split()
    if len(parts) != 3:
        raise _Refused(400, "bad request line")
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADER_LINES):
        header = await reader.readline()
        if header in (b"\r\n", b"\n", b""):
            break
        name, sep, value = header.decode("latin-1").partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    else:
        raise _Refused(400, f"more than {MAX_HEADER_LINES} header lines")
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise _Refused(411, "send the body with a Content-Length, not chunked")
    length_text = headers.get("content-length", "0")
    if not length_text.isdigit():
        raise _Refused(400, f"Content-Length {length_text!r} is not a number")
    length = int(length_text)
    if length > MAX_REQUEST_BODY:
        raise _Refused(413, f"the body may be at most {MAX_REQUEST_BODY} bytes, not {length}")
    body = await reader.readexactly(length) if length else b""
    return Request(parts[0].upper(), parts[1].split("?", 1)[0], headers, body)


async def _drain(reader: asyncio.StreamReader) -> None:
    """Read and drop what a refused client is still sending (bounded): a socket closed
    with unread data resets the connection, and the client would see the reset instead
    of the answer that says why."""
    deadline = asyncio.get_running_loop().time() + 1.0
    dropped = 0
    while dropped < MAX_BODY:
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            return
        try:
            chunk = await asyncio.wait_for(reader.read(65536), left)
        except TimeoutError:
            return
        if not chunk:
            return
        dropped += len(chunk)


async def serve(host: str, port: int, handler: Handler) -> asyncio.Server:
    """Start a tiny server; each connection carries one request."""

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        method = "GET"
        try:
            try:
                request = await asyncio.wait_for(_read_request(reader), REQUEST_DEADLINE_SECONDS)
            except _Refused as exc:
                status, ctype, body = exc.status, "text/plain", f"{exc}\n".encode()
            except TimeoutError:
                status, ctype = 400, "text/plain"
                late = f"the request did not arrive within {REQUEST_DEADLINE_SECONDS:g} s"
                body = f"{late}\n".encode()
            else:
                method = request.method
                try:
                    status, ctype, body = await handler(request)
                except Exception:
                    # A bug in one route must not leave the caller without an answer.
                    log.exception("the status API failed on %s %s", request.method, request.path)
                    status, ctype, body = 500, "text/plain", b"internal error; see the keeper log\n"
            head = (
                f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
                f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            )
            writer.write(head.encode("latin-1") + (b"" if method == "HEAD" else body))
            await writer.drain()
            if status in (411, 413):
                await _drain(reader)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    return await asyncio.start_server(on_connection, host, port)
