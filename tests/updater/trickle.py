"""A hostile HTTP server on loopback: it answers every request one byte at a time.

A real socket server (a thread per connection) that reads the request head, then sends
its answer with ``interval`` seconds between bytes: each byte well inside any read
timeout, the whole answer taking ``len(answer) * interval`` seconds. ``headers_first``
sends the status line and headers at once and trickles only the body; otherwise the
headers trickle too. ``silent_body`` sends the headers and then nothing at all.
Connections in flight are counted, so a test can wait for the keeper to be mid-request.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class TrickleServer:
    def __init__(
        self,
        body: bytes = b"{" + b" " * 4094 + b"}",
        *,
        interval: float = 0.05,
        headers_first: bool = True,
        silent_body: bool = False,
        status: int = 200,
    ) -> None:
        self.body = body
        self.interval = interval
        self.headers_first = headers_first
        self.silent_body = silent_body
        self.status = status
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.in_flight = 0
        self.requests = 0
        self.bytes_sent = 0
        self.threads: list[threading.Thread] = []
        self.accepter = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> TrickleServer:
        self.accepter.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.sock.close()
        for thread in self.threads:
            thread.join(10)

    def wait_in_flight(self, timeout: float = 60.0) -> None:
        """Until a request is being answered (its headers read, bytes trickling)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if self.in_flight and self.bytes_sent:
                    return
            time.sleep(0.02)
        raise AssertionError(f"no request in flight within {timeout} s")

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(30)
            head = b""
            try:
                while b"\r\n\r\n" not in head:
                    data = conn.recv(4096)
                    if not data:
                        return
                    head += data
            except OSError:
                return
            headers = (
                f"HTTP/1.1 {self.status} OK\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(self.body)}\r\n\r\n"
            ).encode()
            with self.lock:
                self.requests += 1
                self.in_flight += 1
            try:
                if self.headers_first:
                    conn.sendall(headers)
                    self._count(len(headers))
                    answer = b"" if self.silent_body else self.body
                else:
                    answer = headers + self.body
                if self.silent_body:
                    # Silent, but alive: until the client goes away or the test ends.
                    while not self.stopping.is_set():
                        conn.settimeout(0.1)
                        try:
                            if conn.recv(1) == b"":
                                return
                        except TimeoutError:
                            continue
                for i in range(len(answer)):
                    if self.stopping.wait(self.interval):
                        return
                    conn.sendall(answer[i : i + 1])
                    self._count(1)
            except OSError:
                return  # the client hung up: what a keeper that gives up does
            finally:
                with self.lock:
                    self.in_flight -= 1

    def _count(self, n: int) -> None:
        with self.lock:
            self.bytes_sent += n


@contextmanager
def trickling(**options: object) -> Iterator[TrickleServer]:
    with TrickleServer(**options) as server:  # type: ignore[arg-type]
        yield server
