"""Decoding a Content-Encoding with a cap on the decoded size, enforced while decoding.

httpx decodes each network chunk whole before the caller sees it, so a gzip "bomb" (a
64 KiB chunk of compressed zeros expands to 64 MiB) costs that memory before any cap on
the decoded document applies. Here the compressed bytes are fed with ``max_length``, so
no step produces more than what is left under the cap (plus one byte, to notice that the
cap is exceeded).
"""

from __future__ import annotations

import zlib
from typing import Any

# What the keeper asks for and decodes itself; anything else is refused.
ACCEPTED_ENCODINGS = "gzip, deflate"


class TooLarge(Exception):
    """The decoded body would exceed the cap."""


class UnsupportedEncoding(Exception):
    """A Content-Encoding the keeper did not ask for."""


class CorruptEncoding(Exception):
    """The compressed bytes do not decode."""


class BoundedDecoder:
    """Feed raw (still encoded) chunks; collects at most ``limit`` decoded bytes."""

    def __init__(self, content_encoding: str | None, limit: int) -> None:
        self.limit = limit
        self._parts: list[bytes] = []
        self._size = 0
        self._encoding = _single_encoding(content_encoding)
        self._zlib = _decompressor(self._encoding)
        self._deflate_raw_fallback = self._encoding == "deflate"

    def feed(self, raw: bytes) -> None:
        if self._zlib is None:
            self._keep(raw)
            return
        data = raw
        while data:
            room = self.limit - self._size + 1
            try:
                out = self._zlib.decompress(data, room)
            except zlib.error as exc:
                if self._deflate_raw_fallback and self._size == 0:
                    # "deflate" is meant to be zlib-wrapped, but some servers send raw
                    # deflate (httpx accepts both): retry the same bytes as raw.
                    self._deflate_raw_fallback = False
                    self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
                    continue
                raise CorruptEncoding(f"the {self._encoding} body does not decode: {exc}") from None
            self._deflate_raw_fallback = False
            self._keep(out)
            data = self._zlib.unconsumed_tail
            if self._zlib.eof:
                break  # trailing bytes after the stream end are ignored, as httpx does

    def finish(self) -> bytes:
        if self._zlib is not None and not self._zlib.eof:
            try:
                self._keep(self._zlib.flush(self.limit - self._size + 1))
            except zlib.error as exc:
                raise CorruptEncoding(f"the {self._encoding} body does not decode: {exc}") from None
        return b"".join(self._parts)

    def _keep(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self.limit:
            raise TooLarge
        if data:
            self._parts.append(data)


def _single_encoding(header: str | None) -> str:
    codings = [c.strip().lower() for c in (header or "").split(",") if c.strip()]
    codings = [c for c in codings if c != "identity"]
    if not codings:
        return "identity"
    if len(codings) > 1 or codings[0] not in ("gzip", "x-gzip", "deflate"):
        raise UnsupportedEncoding(
            f"Content-Encoding {header!r} (the keeper asks for {ACCEPTED_ENCODINGS} only)"
        )
    return "gzip" if codings[0] == "x-gzip" else codings[0]


def _decompressor(encoding: str) -> Any:  # zlib's Decompress type is not public
    if encoding == "gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompressobj()
    return None
