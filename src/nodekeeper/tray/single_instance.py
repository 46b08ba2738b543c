"""One tray app per user session; a second start brings the first one's window up.

The first instance takes an OS lock (``keeper.instance_lock``: flock / a Windows byte
lock, gone with the process however it ends) on ``tray.lock`` in the user's runtime
directory, listens on a loopback TCP port chosen by the OS and writes that port to
``tray.port`` beside the lock. A second start cannot take the lock, connects to the port,
says ``raise`` and exits 0 with a message: the operator clicked the shortcut again
because they want the window, and now they have it.

A loopback port rather than a Unix socket or a named pipe: the same code on Linux and
Windows (Tk runs on both), nothing to clean up after a crash. Another local user could
connect to the port too; all they can do is raise this user's window.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from pathlib import Path

from nodekeeper.durable import write_durably
from nodekeeper.keeper import instance_lock

LOCK_NAME = "tray.lock"
PORT_NAME = "tray.port"
RAISE = b"raise\n"
CONNECT_SECONDS = 3.0


class AlreadyRunning(Exception):
    """Another tray app of this user runs; the message says whether its window was raised."""


def default_dir() -> Path:
    import platformdirs

    return platformdirs.user_runtime_path("nodekeeper", appauthor=False)


class Instance:
    """The first instance: holds the lock and answers ``raise`` by calling ``on_raise``
    (on the listener's thread: the callback must only queue work for the Tk thread)."""

    def __init__(self, directory: Path, on_raise: Callable[[], None]) -> None:
        self.directory = directory
        self.lock = instance_lock.acquire(directory, wait=0, name=LOCK_NAME)
        try:
            self.server = socket.create_server(("127.0.0.1", 0))
            self.port = self.server.getsockname()[1]
            # Whole or absent: a second start (or anything else) reading it mid-write
            # would otherwise find it empty and think the first did not answer.
            write_durably(directory / PORT_NAME, f"{self.port}\n".encode("ascii"))
        except BaseException:
            self.lock.release()
            raise
        self._on_raise = on_raise
        self._thread = threading.Thread(target=self._serve, name="tray instance", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return  # closed
            with conn:
                conn.settimeout(CONNECT_SECONDS)
                try:
                    data = conn.recv(64)
                except OSError:
                    continue
                if data == RAISE:
                    self._on_raise()
                    with contextlib.suppress(OSError):
                        conn.sendall(b"ok\n")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.server.close()
        self._thread.join(CONNECT_SECONDS)
        self.lock.release()


def claim(directory: Path, on_raise: Callable[[], None]) -> Instance:
    """Become the one instance, or raise :class:`AlreadyRunning` after asking the one that
    runs to show its window."""
    try:
        return Instance(directory, on_raise)
    except instance_lock.InstanceLocked as exc:
        raise AlreadyRunning(_poke(directory, exc.holder)) from None
    except instance_lock.LockUnavailable as exc:
        raise AlreadyRunning(f"cannot tell whether the tray app already runs: {exc}") from None


def _poke(directory: Path, holder: str) -> str:
    try:
        port = int((directory / PORT_NAME).read_text(encoding="ascii").strip())
        with socket.create_connection(("127.0.0.1", port), timeout=CONNECT_SECONDS) as conn:
            conn.sendall(RAISE)
            conn.settimeout(CONNECT_SECONDS)
            answered = conn.recv(16) == b"ok\n"
    except (OSError, ValueError):
        answered = False
    if answered:
        return f"the nodekeeper tray app already runs ({holder}): its window is shown"
    return (
        f"the nodekeeper tray app already runs ({holder}) but did not answer; "
        f"end it (its lock is {directory / LOCK_NAME}) and start again"
    )
