"""Ending a blocking HTTP request from another thread: a keeper that stops, or a deadline.

The keeper's checks and downloads use httpx's blocking client in a worker thread
(``asyncio.to_thread``). Cancelling the awaiting task does not stop that thread: it sits
in ``recv`` for up to the read timeout per read, and ``asyncio.run`` waits for it on exit,
so a server trickling one byte per second kept a stopped keeper alive until the server
closed. Shutting the socket down (``SHUT_RDWR``) wakes a thread blocked on it at once; its
httpx call then fails with a network error, which the caller turns into its usual typed
failure. So every request registers its socket, as soon as it is connected, with the
``NetworkAbort`` objects that may end it: the process-wide ``KEEPER_SHUTDOWN`` (through
``make_client``'s request hook) and a per-request deadline (``Deadline``).

What this cannot end early: a DNS lookup and a TCP connect still in progress (no socket
to shut yet); both are bounded by the resolver and the connect timeout (10 s default).
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import httpx

Trace = Callable[[str, dict[str, Any]], None]

# A check or a report must be over within this long, whatever the server does
# (update.request_deadline_seconds): a real announcement arrives in well under a second,
# and a check held open holds every later one (a raised minimum never reaches the node).
DEFAULT_REQUEST_DEADLINE = 60.0


class NetworkAbort:
    """A set of live sockets that ``abort()`` shuts down, now and on connect thereafter.

    Thread-safe: requests register from worker threads, ``abort()`` comes from the event
    loop, a signal handler or a timer thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        self.reason: str | None = None

    @property
    def aborted(self) -> bool:
        return self.reason is not None

    def abort(self, reason: str) -> None:
        with self._lock:
            if self.reason is None:
                self.reason = reason
            sockets = list(self._sockets)
            self._sockets.clear()
        for sock in sockets:
            _shut(sock)

    def reset(self) -> None:
        """Allow requests again (a keeper run in-process after an earlier one stopped)."""
        with self._lock:
            self.reason = None
            self._sockets.clear()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            if self.reason is None:
                self._sockets.add(sock)
                return
        _shut(sock)  # aborted before this request connected: end it at once

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """An httpcore ``trace`` extension: register each new connection's socket."""
        if event == "connection.connect_tcp.complete":
            stream = info.get("return_value")
            sock = stream.get_extra_info("socket") if stream is not None else None
            if isinstance(sock, socket.socket):
                self.watch(sock)

    def watch_response(self, response: httpx.Response) -> None:
        """Register the socket a response arrives on (a pooled connection reused by this
        request was connected before the request's own trace could see it)."""
        stream = response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if isinstance(sock, socket.socket):
            self.watch(sock)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    if sys.platform == "win32":
        # Winsock does not reliably wake a select() on a socket that was only shut down;
        # closing it does ("any pending blocking calls ... are canceled").
        with contextlib.suppress(OSError):
            sock.close()


# The keeper process: aborted when the keeper stops (SIGTERM, SIGINT, a service stop, a
# self-update hand-over); every client made by ``download.make_client`` obeys it.
KEEPER_SHUTDOWN = NetworkAbort()


def chain(*traces: Trace | None) -> Trace:
    """One trace extension calling several (httpx takes one per request)."""
    active = [t for t in traces if t is not None]

    def trace(event: str, info: dict[str, Any]) -> None:
        for t in active:
            t(event, info)

    return trace


class KeeperStopping(httpx.TransportError):
    """A request begun after the keeper started to stop."""


def request_hook(abort: NetworkAbort) -> Callable[[httpx.Request], None]:
    """An httpx request hook that puts every request under ``abort``."""

    def hook(request: httpx.Request) -> None:
        if abort.aborted:
            raise KeeperStopping(f"not sent: {abort.reason}", request=request)
        request.extensions["trace"] = chain(abort.trace, request.extensions.get("trace"))

    return hook


class Deadline:
    """A whole-request deadline: ``seconds`` after ``start()`` the request's socket is shut
    down, whatever the server does (a per-read timeout alone lets a server that trickles
    one byte per read hold a request forever)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.abort = NetworkAbort()

    @property
    def expired(self) -> bool:
        return self.abort.aborted

    @contextlib.contextmanager
    def running(self) -> Iterator[NetworkAbort]:
        timer = threading.Timer(self.seconds, self.abort.abort, args=("deadline",))
        timer.daemon = True
        timer.start()
        try:
            yield self.abort
        finally:
            timer.cancel()
