"""The keeper's side of the node shim (decision 063): start a shim, attach to one, and turn
what it sends into what the supervisor reads from any node (``ProcessHandle``'s stdout
and stderr streams, its exit status).

One thread per attachment receives the shim's messages and hands them to the event loop
(``call_soon_threadsafe``); the supervisor's line readers and ``wait()`` see no
difference from a direct child. A shim that goes away without saying the node's exit
(killed, crashed) took its node with it (the node dies with the shim): that is reported
as an exit by SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Connection
from pathlib import Path
from typing import Any

from nodekeeper.nodeshim import protocol

# The shim answers its first line within this long (a stdlib Python starting up).
START_TIMEOUT = 30.0
# A detach is answered at once; past this the shim is treated as gone.
DETACH_TIMEOUT = 10.0
# Connecting, the key challenge and the hello.
CONNECT_TIMEOUT = 10.0
CREATE_BREAKAWAY_FROM_JOB = 0x01000000
# What a node whose shim vanished without a word is reported as: it died with the shim.
SHIM_GONE_CODE = -signal.SIGKILL if hasattr(signal, "SIGKILL") else 1


class ShimError(OSError):
    """A shim that could not be started or attached; the message says why."""


class NotTheNode(ShimError):
    """The shim at a recorded address runs another node than the record's."""


@dataclass(frozen=True)
class Started:
    shim_pid: int
    node_pid: int
    node_start: int
    address: str
    authkey_hex: str
    # Windows: the job the shim made ({"name", "cpu_rate_error"}); None elsewhere.
    job: dict[str, Any] | None = None


def start_shim(spec: protocol.ShimSpec, spec_path: Path) -> Started:
    """Start a shim for ``spec`` (blocking, up to START_TIMEOUT); OSError if the node
    cannot be started. The shim runs in its own session and does not die with the keeper:
    that is its point."""
    spec.write(spec_path)
    try:
        proc = _popen_shim(spec_path)
    except OSError:
        spec_path.unlink(missing_ok=True)
        raise
    assert proc.stdout is not None
    first = _first_line(proc, START_TIMEOUT)
    proc.stdout.close()
    try:
        answer = json.loads(first)
    except ValueError:
        answer = {"error": f"the node shim said {first[:200]!r}"}
    if not isinstance(answer, dict) or not answer.get("ready"):
        proc.wait(START_TIMEOUT)
        spec_path.unlink(missing_ok=True)
        error = answer.get("error") if isinstance(answer, dict) else None
        raise ShimError(error or f"the node shim exited with code {proc.returncode}")
    # Reaped by a thread when it ends while this keeper runs (no zombie per node start);
    # if this keeper ends first, the shim carries on, reparented, as intended.
    threading.Thread(target=proc.wait, name="shim-reaper", daemon=True).start()
    return Started(
        proc.pid,
        int(answer["node_pid"]),
        int(answer["node_start"]),
        spec.address,
        spec.authkey_hex,
        answer.get("job") if isinstance(answer.get("job"), dict) else None,
    )


def _first_line(proc: subprocess.Popen[bytes], timeout: float) -> str:
    result: list[bytes] = []
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: result.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not result:
        proc.kill()
        raise ShimError(f"the node shim did not answer within {timeout:g} s")
    return result[0].decode("utf-8", "replace").strip()


def _popen_shim(spec_path: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "nodekeeper.nodeshim", str(spec_path)]
    pipes: dict[str, Any] = {
        "stdin": subprocess.DEVNULL, "stdout": subprocess.PIPE, "stderr": subprocess.DEVNULL,
    }  # fmt: skip
    if os.name != "nt":
        return subprocess.Popen(argv, start_new_session=True, **pipes)
    detached = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.DETACHED_PROCESS  # type: ignore[attr-defined]
    try:
        # Out of the keeper's job (the launcher's, which allows it): the shim must outlive
        # the keeper, and makes its own job for the node.
        return subprocess.Popen(argv, creationflags=detached | CREATE_BREAKAWAY_FROM_JOB, **pipes)
    except PermissionError:
        # In a job that does not allow breakaway (not the launcher's: a keeper run by hand
        # under some other tool). The shim then lives and dies with that job.
        return subprocess.Popen(argv, creationflags=detached, **pipes)


def _connect(
    address: str, authkey_hex: str, timeout: float, expect: dict[str, int] | None
) -> tuple[Connection, Any]:
    """Connect, authenticate and attach, within ``timeout``: ``Client`` has no deadline of
    its own, so the handshake runs in a thread that is abandoned if the shim is wedged."""
    result: list[Any] = []

    def attach() -> None:
        try:
            conn = Client(address, protocol.family(address), authkey=bytes.fromhex(authkey_hex))
            conn.send({"op": protocol.ATTACH, **({"expect": expect} if expect else {})})
            result.append((conn, conn.recv()))
        except (OSError, EOFError, ValueError, AuthenticationError) as exc:
            result.append(exc)

    worker = threading.Thread(target=attach, name="shim-attach", daemon=True)
    worker.start()
    worker.join(timeout)
    if not result:
        raise ShimError(f"the node shim at {address!r} did not answer within {timeout:g} s")
    if isinstance(result[0], BaseException):
        raise ShimError(f"cannot attach to the node shim at {address!r}: {result[0]}")
    return result[0]  # type: ignore[no-any-return]


async def attach(
    address: str, authkey_hex: str, limit: int, expect: dict[str, int] | None = None
) -> Attachment:
    """Attach to the shim at ``address`` (connect, key challenge, hello) without blocking
    the event loop; ShimError if it cannot be done within CONNECT_TIMEOUT. With
    ``expect`` ({"node_pid", "node_start"}), NotTheNode if the shim runs another node:
    then nothing was taken from its backlog."""
    conn, hello = await asyncio.to_thread(_connect, address, authkey_hex, CONNECT_TIMEOUT, expect)
    if expect and isinstance(hello, dict):
        running = (hello.get("node_pid"), hello.get("node_start"))
        if running != (expect["node_pid"], expect["node_start"]):
            conn.close()
            raise NotTheNode(
                f"the shim runs pid {running[0]} (started at {running[1]}), the record says "
                f"pid {expect['node_pid']} ({expect['node_start']})"
            )
    try:
        return Attachment(conn, hello, address, authkey_hex, limit)
    except ShimError:
        conn.close()
        raise


class Attachment:
    """One keeper's connection to a shim: the node's output as asyncio streams, its exit,
    and ``detach`` for a hand-over. Made by :func:`attach`, on the event loop's thread."""

    def __init__(
        self, conn: Connection, hello: Any, address: str, authkey_hex: str, limit: int
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.conn = conn
        if not isinstance(hello, dict) or hello.get("ev") != protocol.HELLO:
            raise ShimError(f"the node shim answered {hello!r} instead of hello")
        if hello.get("format") != protocol.FORMAT:
            raise ShimError(
                f"the node shim speaks format {hello.get('format')}, this keeper {protocol.FORMAT}"
            )
        self.shim_pid = int(hello["shim_pid"])
        self.node_pid = int(hello["node_pid"])
        self.node_start = int(hello["node_start"])
        self.ops = tuple(hello.get("ops") or (protocol.ATTACH, protocol.DETACH))
        self.address = address
        self.authkey_hex = authkey_hex
        self.stdout = asyncio.StreamReader(limit=limit, loop=self.loop)
        self.stderr = asyncio.StreamReader(limit=limit, loop=self.loop)
        self.returncode: int | None = None
        self.dropped = 0
        self.next_seq: int | None = None
        self._exited = asyncio.Event()
        self._detached = threading.Event()
        self._send_lock = threading.Lock()
        self._thread = threading.Thread(target=self._receive, name="shim-receive", daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        code: int | None = SHIM_GONE_CODE
        try:
            while True:
                message = self.conn.recv()
                kind = message.get("ev") if isinstance(message, dict) else None
                if kind == protocol.LINES:
                    stream = self.stdout if message["stream"] == "stdout" else self.stderr
                    data = b"".join(message["lines"])
                    if not self._to_loop(stream.feed_data, data):
                        return
                elif kind == protocol.DROPPED:
                    self.dropped += int(message["count"])
                    note = (
                        f"[nodekeeper: {message['count']} lines of the node's output were "
                        "dropped while no keeper was attached]\n"
                    ).encode()
                    if not self._to_loop(self.stderr.feed_data, note):
                        return
                elif kind == protocol.EXIT:
                    code = int(message["code"])
                    break
                elif kind == protocol.DETACHED:
                    self.next_seq = int(message["next_seq"])
                    code = None
                    self._detached.set()
                    break
        except (EOFError, OSError):
            pass
        finally:
            with contextlib.suppress(OSError):
                self.conn.close()
            self._to_loop(self._ended, code)

    def _to_loop(self, callback: Any, *args: Any) -> bool:
        """Run ``callback`` on the loop; False once the loop is closed (the keeper is
        ending: this thread ends too, and the shim keeps the rest for the next one)."""
        try:
            self.loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            return False
        return True

    def _ended(self, code: int | None) -> None:
        if code is not None:  # an exit; after a detach the node still runs: no EOF
            self.returncode = code
            self.stdout.feed_eof()
            self.stderr.feed_eof()
            self._exited.set()

    async def wait(self) -> int:
        await self._exited.wait()
        assert self.returncode is not None
        return self.returncode

    def detach(self, timeout: float = DETACH_TIMEOUT) -> bool:
        """Ask the shim to stop sending and wait for its answer (blocking). Every line it
        sent before the answer has been handed to the loop. False if it did not answer."""
        try:
            with self._send_lock:
                self.conn.send({"op": protocol.DETACH})
        except OSError:
            return False
        if not self._detached.wait(timeout):
            return False
        self._thread.join(timeout)
        return True

    def request_stop(self) -> bool:
        """Ask the shim to send the node its graceful stop signal; False when this shim
        does not know the op (it predates it) or is gone."""
        if protocol.STOP not in self.ops:
            return False
        try:
            with self._send_lock:
                self.conn.send({"op": protocol.STOP})
        except OSError:
            return False
        return True

    def end_output(self) -> None:
        """After a detach: end both streams, behind every line already handed to the loop
        (thread-safe)."""
        for stream in (self.stdout, self.stderr):
            self.loop.call_soon_threadsafe(stream.feed_eof)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.close()
