"""A fast lane for ``GET /`` inside uvicorn's httptools protocol.

Every node polls ``GET /``, so it is the one hot path, and its answer is the same bytes
for everyone until something changes. Going through ASGI costs a task, a scope and a
dozen awaits per request, which caps a replica at a few thousand requests per second; the
fast lane answers from a response that is framed once per document change, right where
httptools has parsed the request line and headers, the way a static file server would.

Only a plain ``GET``/``HEAD`` of exactly ``/`` on an idle keep-alive connection takes
the lane; everything else (other paths, query strings, upgrades, pipelined requests,
bodies) goes through ASGI as usual. The FastAPI route for ``/`` stays the reference: the
tests compare the two byte for byte (headers aside from Date).

This subclass reaches into uvicorn's HttpToolsProtocol (its parser callbacks, ``cycle``,
``pipeline`` and ``on_response_complete``); ``make_protocol`` checks those are there and
falls back to the stock protocol if a uvicorn upgrade moved them.
"""

from __future__ import annotations

import asyncio
import logging

from .doc_cache import DocumentCache
from .document import RenderedDocument, etag_matches
from .metrics import RequestCounts

log = logging.getLogger("nodekeeper.server")

_REQUIRED = ("on_headers_complete", "on_body", "on_message_complete", "on_response_complete")


class _Framed:
    """The response bytes for one rendered document, framed once."""

    def __init__(self, doc: RenderedDocument) -> None:
        self.doc = doc
        self.etag = doc.etag.encode()
        common = b"etag: " + self.etag + b"\r\ncache-control: no-cache\r\n"
        self.ok_head = (
            b"HTTP/1.1 200 OK\r\n"
            + common
            + b"content-type: application/json\r\ncontent-length: "
            + str(len(doc.body)).encode()
            + b"\r\n"
        )
        self.not_modified_head = b"HTTP/1.1 304 Not Modified\r\n" + common


def make_protocol(
    documents: DocumentCache, counts: RequestCounts | None = None
) -> type[asyncio.Protocol] | str:
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # httptools missing: uvicorn's own choice will do
        return "auto"
    if not all(hasattr(HttpToolsProtocol, name) for name in _REQUIRED):
        log.warning("uvicorn's protocol changed shape; GET / goes through ASGI")
        return "httptools"

    framed: list[_Framed] = []

    def current() -> _Framed:
        doc = documents.current
        if not framed or framed[0].doc is not doc:
            framed[:] = [_Framed(doc)]
        return framed[0]

    class FastLaneProtocol(HttpToolsProtocol):
        _fast = False

        def on_headers_complete(self) -> None:
            parser = self.parser
            self._fast = (
                self.url == b"/"
                and parser.get_method() in (b"GET", b"HEAD")
                and not parser.should_upgrade()
                and not self.pipeline
                and (self.cycle is None or self.cycle.response_complete)
            )
            if not self._fast:
                super().on_headers_complete()

        def on_body(self, body: bytes) -> None:
            if not self._fast:
                super().on_body(body)

        def on_message_complete(self) -> None:
            if not self._fast:
                super().on_message_complete()
                return
            self._fast = False
            response = current()
            keep_alive = self.parser.get_http_version() == "1.1" and self.parser.should_keep_alive()
            inm = next((v for k, v in self.headers if k == b"if-none-match"), None)
            head = (
                response.not_modified_head
                if inm is not None and etag_matches(inm, response.etag)
                else response.ok_head
            )
            if counts is not None:  # /metrics: the fast lane's answers never reach ASGI
                counts.fast_lane(200 if head is response.ok_head else 304)
            parts = [head]
            parts.extend(
                name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers
            )
            if not keep_alive:
                parts.append(b"connection: close\r\n")
            parts.append(b"\r\n")
            if head is response.ok_head and self.parser.get_method() == b"GET":
                parts.append(response.doc.body)
            self.transport.write(b"".join(parts))
            if not keep_alive:
                self.transport.close()
                return
            self.on_response_complete()  # counts the request, re-arms keep-alive

    return FastLaneProtocol
