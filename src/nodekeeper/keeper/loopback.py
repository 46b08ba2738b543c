"""Minimal HTTP/1.1 over asyncio streams, for loopback only: the pulse probe, the node's
shutdown endpoint, and the keeper's own status API.

Why not httpx/uvicorn here: these talk to 127.0.0.1 with one request per connection and
tiny bodies, and the keeper must idle at <= 40 MB RSS on a home PC; httpx alone adds
~12 MB to the process. Internet-facing HTTP (the updater's downloads) does use httpx.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_BODY = 1024 * 1024
MAX_HEADER_LINES = 100


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

Handler = Callable[[str, str], Awaitable[tuple[int, str, bytes]]]
"""(method, path) → (status, content type, body)."""

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}


async def serve(host: str, port: int, handler: Handler) -> asyncio.Server:
    """Start a tiny server; each connection carries one request (GET/HEAD)."""

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            for _ in range(MAX_HEADER_LINES):
                header = await asyncio.wait_for(reader.readline(), 5)
                if header in (b"\r\n", b"\n", b""):
                    break
            parts = line.decode("latin-1").split()
            if len(parts) != 3:
                status, ctype, body = 400, "text/plain", b"bad request\n"
                method = "GET"
            else:
                method, target = parts[0], parts[1]
                status, ctype, body = await handler(method, target.split("?", 1)[0])
            head = (
                f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
                f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            )
            writer.write(head.encode("latin-1") + (b"" if method == "HEAD" else body))
            await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    return await asyncio.start_server(on_connection, host, port)
