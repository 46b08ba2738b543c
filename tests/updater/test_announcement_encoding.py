"""A compressed announcement is decoded with its size bounded while decoding.

httpx decodes each network chunk whole, so a gzip bomb (1 GiB of zeros is ~1 MiB
compressed; one 64 KiB chunk expands to 64 MiB) cost that memory before the cap on the
decoded document applied. A real HTTP server on loopback sends the bomb; the peak of the
memory Python allocates during the check is measured with tracemalloc.
"""

from __future__ import annotations

import contextlib
import gzip
import http.server
import json
import struct
import threading
import tracemalloc
import zlib
from collections.abc import Iterator
from typing import Any

import pytest

from nodekeeper.updater.checker import MAX_DOCUMENT_BYTES, fetch_announcement
from nodekeeper.updater.download import DownloadSettings, make_client
from nodekeeper.updater.errors import AnnouncementInvalid

from .test_checker import document

pytestmark = pytest.mark.timeout(120)
MiB = 1024 * 1024


class EncodedServer:
    """Answers every GET with ``body`` and ``Content-Encoding: encoding``."""

    def __init__(self, body: bytes, encoding: str | None) -> None:
        outer = self
        self.body, self.encoding = body, encoding

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                if outer.encoding:
                    self.send_header("Content-Encoding", outer.encoding)
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                # The keeper may stop reading: what it should do with a bomb.
                with contextlib.suppress(OSError):
                    self.wfile.write(outer.body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def __enter__(self) -> EncodedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def gzip_of_zeros(size: int, block_size: int = 16 * MiB) -> bytes:
    """``size`` zero bytes as one gzip member, built in under a second.

    Compressing a GiB of zeros at level 9 took 5 s idle and 16 s under load. With a full
    flush after each block, every block after the first compresses to the same bytes (the
    window holds only zeros), so the stream is the first block, that repeat, the end, and
    the gzip trailer (CRC-32 and size of the zeros)."""
    assert size % block_size == 0 and size >= block_size
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)  # raw deflate
    block = bytes(block_size)
    first = packer.compress(block) + packer.flush(zlib.Z_FULL_FLUSH)
    repeat = packer.compress(block) + packer.flush(zlib.Z_FULL_FLUSH)
    end = packer.flush()
    crc = 0
    for _ in range(size // block_size):
        crc = zlib.crc32(block, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"  # gzip, deflate, no name
    trailer = struct.pack("<II", crc, size & 0xFFFFFFFF)
    return header + first + repeat * (size // block_size - 1) + end + trailer


def test_the_bomb_is_a_valid_gzip_of_zeros() -> None:
    bomb = gzip_of_zeros(64 * MiB, block_size=4 * MiB)
    assert gzip.decompress(bomb) == bytes(64 * MiB)  # checks the CRC and the size too


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return gzip_of_zeros(1024 * MiB)


@pytest.fixture
def client() -> Iterator[Any]:
    with make_client(DownloadSettings(connect_timeout=5, read_timeout=10)) as c:
        yield c


def test_a_gzip_bomb_is_refused_with_little_memory(bomb: bytes, client: Any) -> None:
    assert len(bomb) <= MAX_DOCUMENT_BYTES  # small on the wire: only decoding can catch it
    with EncodedServer(bomb, "gzip") as server:
        tracemalloc.start()
        try:
            with pytest.raises(AnnouncementInvalid) as refused:
                fetch_announcement(client, server.url)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 8 * MiB, f"peak {peak / MiB:.1f} MiB"
    assert "larger than 1048576 bytes (decoded)" in str(refused.value)


@pytest.mark.parametrize("encoding", ["gzip", "x-gzip", "deflate", "deflate-raw", None])
def test_compressed_announcements_decode(client: Any, encoding: str | None) -> None:
    doc = document("1.4.0")
    if encoding in ("gzip", "x-gzip"):
        body = gzip.compress(doc)
    elif encoding == "deflate":
        body = zlib.compress(doc)
    elif encoding == "deflate-raw":  # what some servers send for "deflate"
        packer = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        body, encoding = packer.compress(doc) + packer.flush(), "deflate"
    else:
        body = doc
    with EncodedServer(body, encoding) as server:
        fetched = fetch_announcement(client, server.url)
    assert fetched.body == doc
    assert fetched.announcement.processes["storagenode"].suggested.version == "1.4.0"


def test_a_document_just_under_the_cap_decodes(client: Any) -> None:
    doc = json.loads(document())
    doc["padding"] = "x" * (MAX_DOCUMENT_BYTES - len(json.dumps(doc)) - 20)
    raw = json.dumps(doc).encode()
    assert len(raw) <= MAX_DOCUMENT_BYTES
    with EncodedServer(gzip.compress(raw), "gzip") as server:
        try:
            fetched = fetch_announcement(client, server.url)
        except AnnouncementInvalid as exc:  # the schema may refuse the extra key...
            assert "larger than" not in str(exc)  # ...but never the size
        else:
            assert fetched.body == raw


@pytest.mark.parametrize(
    ("body", "encoding", "message"),
    [
        (b"not gzip at all", "gzip", "gzip body does not decode"),
        (b"whatever", "br", "Content-Encoding 'br'"),
        (b"whatever", "gzip, gzip", "Content-Encoding 'gzip, gzip'"),
    ],
)
def test_bad_encodings_are_refused_clearly(
    client: Any, body: bytes, encoding: str, message: str
) -> None:
    with EncodedServer(body, encoding) as server, pytest.raises(AnnouncementInvalid) as e:
        fetch_announcement(client, server.url)
    assert message in str(e.value)
    assert e.value.kind == "announcement_invalid"
