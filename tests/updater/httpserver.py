"""A controllable HTTP(S) file server on loopback for the updater tests.

It serves byte strings by path with Range support and ETags, optionally throttled
(``rate``), and misbehaves on demand with one queued ``Fault`` per request: answer a
status, close the connection or stall after N body bytes, ignore Range, send more bytes
than the file has, lie in Content-Range, call a hook half-way (to fill a disk at a chosen
instant). Every request is recorded with the body bytes actually sent, so tests can
assert what a resume fetched. It also works as a forward proxy for plain HTTP
(absolute-form request targets).
"""

from __future__ import annotations

import hashlib
import http.server
import re
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

CHUNK = 64 * 1024


@dataclass
class Fault:
    """What the next request gets instead of a correct answer (fields combine)."""

    status: int | None = None  # answer this status with an empty body
    retry_after: str | None = None
    close_after: int | None = None  # body bytes sent before the connection is cut
    stall_after: int | None = None  # body bytes sent before going silent
    stall_seconds: float = 30.0
    ignore_range: bool = False  # answer 200 with the whole file even to a Range request
    extra: bytes = b""  # appended after the file's bytes
    no_length: bool = False  # no Content-Length: the body ends when the connection closes
    range_total: int | None = None  # lie about the total in Content-Range
    range_start: int | None = None  # lie about the start in Content-Range (and send from it)
    hook_after: int | None = None  # call hook after this many body bytes
    hook: Callable[[], None] | None = None


@dataclass
class Served:
    path: str
    range: str | None
    if_none_match: str | None
    status: int
    sent: int = 0
    proxied: bool = False
    headers: dict[str, str] = field(default_factory=dict)


class FileServer:
    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.files: dict[str, bytes] = {}
        self.rate: float | None = None  # body bytes per second for every response
        self.etags: dict[str, str] = {}
        self.faults: deque[Fault] = deque()
        self.served: list[Served] = []
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        outer = self

        class Handler(_Handler):
            server_ref = outer

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.scheme = "https" if tls is not None else "http"
        # A short poll interval: shutdown() waits up to one interval, per test.
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.httpd.server_address[1]}"

    def add(self, path: str, data: bytes, *, etag: bool = False) -> str:
        """Serve ``data`` at ``path``; returns its URL."""
        self.files[path] = data
        if etag:
            self.etags[path] = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
        return self.url + path

    def fault(self, **kwargs: object) -> Fault:
        f = Fault(**kwargs)  # type: ignore[arg-type]
        self.faults.append(f)
        return f

    def bytes_sent(self, path: str | None = None) -> int:
        return sum(s.sent for s in self.served if path is None or s.path == path)

    def start(self) -> FileServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> FileServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_ref: FileServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        srv = self.server_ref
        target = self.path
        proxied = target.startswith("http://")
        path = urlsplit(target).path if proxied else target.split("?")[0]
        with srv.lock:
            fault = srv.faults.popleft() if srv.faults else Fault()
        record = Served(
            path,
            self.headers.get("Range"),
            self.headers.get("If-None-Match"),
            0,
            proxied=proxied,
            headers=dict(self.headers.items()),
        )
        srv.served.append(record)
        if fault.status is not None:
            record.status = fault.status
            self.send_response(fault.status)
            if fault.retry_after is not None:
                self.send_header("Retry-After", fault.retry_after)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = srv.files.get(path)
        if data is None:
            record.status = 404
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        etag = srv.etags.get(path)
        if etag is not None and self.headers.get("If-None-Match") == etag:
            record.status = 304
            self.send_response(304)
            self.send_header("ETag", etag)
            self.end_headers()
            return
        status, start = 200, 0
        match = re.match(r"^bytes=(\d+)-$", self.headers.get("Range") or "")
        if match and not fault.ignore_range:
            start = int(match.group(1))
            if start >= len(data):
                record.status = 416
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        if fault.range_start is not None:
            start = fault.range_start
        body = data[start:] + fault.extra
        record.status = status
        self.send_response(status)
        if status == 206:
            total = fault.range_total if fault.range_total is not None else len(data)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{total}")
        if etag is not None:
            self.send_header("ETag", etag)
        self.send_header("Accept-Ranges", "bytes")
        if fault.no_length:
            self.send_header("Connection", "close")
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self._send_body(body, fault, record)

    def _send_body(self, body: bytes, fault: Fault, record: Served) -> None:
        srv = self.server_ref
        view = memoryview(body)
        limits = [
            n for n in (fault.close_after, fault.stall_after, fault.hook_after) if n is not None
        ]
        try:
            while record.sent < len(body):
                end = min([record.sent + CHUNK, len(body)] + [n for n in limits if n > record.sent])
                self.wfile.write(view[record.sent : end])
                if srv.rate is not None:
                    time.sleep((end - record.sent) / srv.rate)
                record.sent = end
                if fault.hook_after == end and fault.hook is not None:
                    fault.hook()
                if fault.stall_after == end:
                    srv.stopping.wait(fault.stall_seconds)
                if fault.close_after == end:
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            self.close_connection = True
