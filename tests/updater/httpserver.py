"""A controllable HTTP(S) file server on loopback for the updater tests.

It serves byte strings by path with Range support and ETags, optionally throttled
(``rate``), and misbehaves on demand with one queued ``Fault`` per request: answer a
status, close the connection or stall after N body bytes, ignore Range, send more bytes
than the file has, lie in Content-Range, call a hook half-way (to fill a disk at a chosen
instant). Every request is recorded with the body bytes actually sent, so tests can
assert what a resume fetched. It also works as a forward proxy for plain HTTP
(absolute-form request targets).

It also keeps a log of what happened to each connection (accepted, each request, ended by
the client before sending one, a handler error, a thread that could not start), and
``ClientTrace`` records what a client saw of the same connections (httpcore's trace
events), on the same clock. A test that fails with "server disconnected" can then show
both sides with ``timeline`` and say which one ended the connection, even when the
failure happened once in a long run and never again (decision 037).
"""

from __future__ import annotations

import hashlib
import http.server
import os
import re
import socket
import ssl
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

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


@dataclass(frozen=True)
class Event:
    """One thing that happened to a connection, at ``at`` (``time.monotonic()``)."""

    at: float
    peer: str  # the client's address, "127.0.0.1:PORT" ("" when unknown)
    what: str


class ConnectionLog:
    """Events from several threads, in the order they happened."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[Event] = []

    def note(self, peer: str, what: str) -> None:
        with self._lock:
            self.events.append(Event(time.monotonic(), peer, what))

    def snapshot(self) -> list[Event]:
        with self._lock:
            return list(self.events)


# /proc/net/tcp's state codes. Who sent FIN first shows in the state of our socket:
# CLOSE_WAIT, the peer did; FIN_WAIT1/FIN_WAIT2/CLOSING, this side shut down first.
_TCP_STATES = {
    "01": "ESTABLISHED",
    "02": "SYN_SENT",
    "03": "SYN_RECV",
    "04": "FIN_WAIT1",
    "05": "FIN_WAIT2",
    "06": "TIME_WAIT",
    "07": "CLOSE",
    "08": "CLOSE_WAIT",
    "09": "LAST_ACK",
    "0A": "LISTEN",
    "0B": "CLOSING",
}


def _inode(fd: int) -> int | None:
    try:
        return os.fstat(fd).st_ino
    except OSError:
        return None


def _tcp_state(inode: int | None) -> str:
    """The kernel's state of the TCP socket with this inode (Linux), or why not known."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            return "unknown (no /proc/net/tcp)"
        for row in rows:
            fields = row.split()
            if len(fields) > 9 and fields[9] == str(inode):
                return _TCP_STATES.get(fields[3], fields[3])
    return "gone (closed, or TIME_WAIT: listed without an inode)"


def socket_facts(fd: int, inode: int | None) -> str:
    """Whether ``fd`` is still the socket it was (a stray ``os.close`` of a reused fd
    number elsewhere in the process would change that) and its TCP state now."""
    now = _inode(fd)
    if now == inode:
        where = f"fd {fd} is still this socket"
    elif now is None:
        where = f"fd {fd} was closed"
    else:
        where = f"fd {fd} is now another file (inode {now}): closed by someone else"
    return f"{where}; TCP state {_tcp_state(inode)}"


def _peer(address: Any) -> str:
    try:
        host, port = address[:2]
    except (TypeError, ValueError):
        return ""
    return f"{host}:{port}"


class _LoggingHTTPServer(http.server.ThreadingHTTPServer):
    """The standard threading server, with every connection-level event noted in
    ``log``: what it does silently (a failed TLS accept, a request never sent) or only
    on stderr (a handler error, no thread for a connection) becomes part of the test's
    failure message."""

    daemon_threads = True

    def __init__(self, log: ConnectionLog, handler: type[http.server.BaseHTTPRequestHandler]):
        self.log = log
        self.inodes: dict[str, int | None] = {}  # peer -> its socket's inode when accepted
        super().__init__(("127.0.0.1", 0), handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        try:
            request, address = super().get_request()
        except OSError as exc:  # the standard server drops these without a word
            self.log.note("", f"accept failed: {exc!r}")
            raise
        self.inodes[_peer(address)] = _inode(request.fileno())
        self.log.note(_peer(address), f"accepted (fd {request.fileno()})")
        return request, address

    def process_request(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request(request, client_address)  # starts the handler thread
        except BaseException as exc:
            self.log.note(_peer(client_address), f"no handler thread: {exc!r}")
            raise

    def handle_error(self, request: Any, client_address: Any) -> None:
        peer = _peer(client_address)
        facts = socket_facts(request.fileno(), self.inodes.get(peer))
        self.log.note(peer, f"handler error ({facts}): {traceback.format_exc()}")
        super().handle_error(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        try:
            peer = _peer(request.getpeername())
        except OSError as exc:
            peer = f"(getpeername: {exc.strerror})"
        self.log.note(peer, "closed by the server")
        super().shutdown_request(request)


class ClientTrace:
    """What a client saw of its connections: httpcore's trace events (connected, request
    sent, response headers received, each ``.failed`` with its exception), noted in the
    same kind of log as the server's. ``attach`` adds it to every request of a client."""

    def __init__(self) -> None:
        self.log = ConnectionLog()
        self._local = threading.local()  # this request's connection: peer, fd, inode

    def attach(self, client: httpx.Client) -> None:
        # Request hooks run in order: this one wraps whatever trace the client's own hook
        # (the keeper's abort) has set, and keeps it working.
        client.event_hooks["request"].append(self._hook)

    def _hook(self, request: httpx.Request) -> None:
        inner = request.extensions.get("trace")
        target = f"{request.method} {request.url}"

        def trace(event: str, info: dict[str, Any]) -> None:
            self._record(event, info, target)
            if inner is not None:
                inner(event, info)

        request.extensions["trace"] = trace

    def _record(self, event: str, info: dict[str, Any], target: str) -> None:
        if event == "connection.connect_tcp.complete":
            stream = info.get("return_value")
            sock = stream.get_extra_info("socket") if stream is not None else None
            if not isinstance(sock, socket.socket):
                return
            local, fd = _peer(sock.getsockname()), sock.fileno()
            self._local.peer, self._local.fd, self._local.inode = local, fd, _inode(fd)
            self.log.note(local, f"connected (fd {fd}) for {target}")
        elif event.endswith(".complete") and not event.startswith("connection."):
            self.log.note(getattr(self._local, "peer", ""), event)
        elif event.endswith(".failed") and not event.startswith("connection."):
            # Noted before httpcore closes the connection: the socket can still be examined.
            facts = ""
            if getattr(self._local, "fd", None) is not None:
                facts = f" ({socket_facts(self._local.fd, self._local.inode)})"
            self.log.note(
                getattr(self._local, "peer", ""), f"{event}: {info.get('exception')!r}{facts}"
            )
        elif event.startswith("connection.") and event.endswith(".failed"):
            self.log.note("", f"{event}: {info.get('exception')!r}")


def timeline(server: FileServer, *clients: ClientTrace) -> str:
    """Both sides' events in one list, in time order, for a failure message."""
    rows = [("server", e) for e in server.log.snapshot()]
    rows += [("client", e) for c in clients for e in c.log.snapshot()]
    rows.sort(key=lambda row: row[1].at)
    lines = [
        f"  {e.at - server.started:+8.3f}s {side} {e.peer or '-'} {e.what}".rstrip()
        for side, e in rows
    ]
    threads = threading.active_count()
    return "\n".join(["connections (server and client):", *lines, f"  threads alive: {threads}"])


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

        self.log = ConnectionLog()
        self.started = time.monotonic()
        self.httpd = _LoggingHTTPServer(self.log, Handler)
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

    def log_error(self, format: str, *args: object) -> None:
        # A request timing out or malformed: not printed, but kept for the failure message.
        self.server_ref.log.note(_peer(self.client_address), "error: " + format % args)

    def setup(self) -> None:
        super().setup()
        self.requests = 0
        self.inode = self.server.inodes.get(_peer(self.client_address))  # type: ignore[attr-defined]

    def handle_one_request(self) -> None:
        super().handle_one_request()
        peer = _peer(self.client_address)
        if self.raw_requestline:
            self.requests += 1
            self.server_ref.log.note(peer, f"answered {self.requestline!r}")
        elif self.requests == 0:
            # The suspicious case: the connection ended without a request.
            facts = socket_facts(self.connection.fileno(), self.inode)
            self.server_ref.log.note(peer, f"ended before any request ({facts})")
        else:
            self.server_ref.log.note(peer, f"ended by the client after {self.requests} requests")

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
