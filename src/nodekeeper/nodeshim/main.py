"""The node shim program: ``python -m nodekeeper.nodeshim SPEC.json``.

Starts the node as its child and then runs until its job is over:
- the node exited and an attached keeper has been told (after every line it wrote);
- or the anchor (the launcher) ended, or the shim got SIGTERM: the node is stopped
  gracefully, killed after the stop timeout, and the shim exits;
- or the node exited and no keeper attached for ``ORPHAN_SECONDS``.

Its first line on stdout says whether the node started: ``{"ready": true, "node_pid":
N, "node_start": T}`` or ``{"error": "..."}`` (exit 1). After that its stdout is the null
device: the keeper that started it may be long gone.

Threads, all sharing one condition: one reader per output stream, one waiter for the
node, one anchor watcher, one accept loop, and per attached keeper a receiver and a
sender. The sender and the detach answer share a lock, so ``detached`` is always the
last thing a keeper gets on its connection.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from itertools import groupby
from multiprocessing import AuthenticationError
from multiprocessing.connection import Connection, Listener, answer_challenge, deliver_challenge
from typing import Any

from . import anchor, protocol
from .process import node_start_time, popen_options
from .relay import Backlog, LineSplitter

# After the node exited, how long the shim waits for a keeper to collect the exit code.
ORPHAN_SECONDS = 300.0
# After the node exited, how long its output may take to reach EOF (a descendant that
# inherited the pipe could hold it open forever).
DRAIN_SECONDS = 1.0
# After stopping the node itself, how long the shim waits to deliver its exit to a keeper
# that is still attached before it leaves anyway.
DELIVER_SECONDS = 2.0


@dataclass
class Session:
    conn: Connection
    send_lock: threading.Lock = field(default_factory=threading.Lock)
    closed: bool = False


class Shim:
    def __init__(self, spec: protocol.ShimSpec) -> None:
        self.spec = spec
        self.cond = threading.Condition()
        self.backlog = Backlog(protocol.BACKLOG_BYTES)
        self.streams_open = 2
        self.exit_code: int | None = None
        self.exited_at: float | None = None
        self.session: Session | None = None
        self.done = threading.Event()
        self.stopping = threading.Event()
        self.proc: subprocess.Popen[bytes] | None = None
        self.job: int | None = None  # Windows: the job handle, open for the shim's life

    # -- the shim's own few lines --------------------------------------------------------

    def say(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        with contextlib.suppress(OSError), open(self.spec.log_path, "a", encoding="utf-8") as f:
            f.write(f"{stamp} shim {os.getpid()}: {message}\n")

    # -- start ---------------------------------------------------------------------------

    def start(self) -> dict[str, Any]:
        spec = self.spec
        self.authkey = bytes.fromhex(spec.authkey_hex)
        # No authkey here: Listener.accept would run the challenge in the accept loop, where
        # one client that never answers would keep every keeper out. Each connection is
        # challenged in its own thread instead (``_serve``), before anything is read.
        self.listener = Listener(spec.address, protocol.family(spec.address))
        job: dict[str, Any] | None = None
        if os.name == "nt":
            _ensure_console()
            # The node must die with the shim and live inside its limits: a job whose
            # lasting handle is ours (winjob). Without it the node must not start at all,
            # as the keeper's own Windows start refuses to run a node outside its job.
            from . import winjob

            self.job, cpu_rate_error = winjob.hold_node_job(spec.job)
            job = {"name": spec.job.name if spec.job else "", "cpu_rate_error": cpu_rate_error}
        self.proc = subprocess.Popen(
            spec.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=spec.env,
            cwd=spec.cwd,
            **popen_options(spec.child),
        )
        if os.name == "nt":
            try:
                winjob.set_and_resume(self.proc.pid, spec.job)  # started suspended
            except OSError:
                self.proc.kill()
                self.proc.wait()
                raise
        for name, pipe in (("stdout", self.proc.stdout), ("stderr", self.proc.stderr)):
            threading.Thread(target=self._read, args=(name, pipe), daemon=True).start()
        threading.Thread(target=self._wait_node, daemon=True).start()
        threading.Thread(target=self._watch_anchor, daemon=True).start()
        threading.Thread(target=self._accept, daemon=True).start()
        self.say(f"started the node (pid {self.proc.pid}): {spec.argv[0]}")
        return {
            "ready": True,
            "node_pid": self.proc.pid,
            "node_start": node_start_time(self.proc.pid),
            "ops": list(protocol.OPS),
            "job": job,
        }

    # -- the node ------------------------------------------------------------------------

    def _read(self, stream: str, pipe: Any) -> None:
        splitter = LineSplitter(protocol.MAX_LINE)
        fd = pipe.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            lines = splitter.feed(chunk) if chunk else splitter.end()
            with self.cond:
                for line in lines:
                    self.backlog.add(stream, line)
                if not chunk:
                    self.streams_open -= 1
                self.cond.notify_all()
            if not chunk:
                pipe.close()
                return

    def _wait_node(self) -> None:
        assert self.proc is not None
        code = self.proc.wait()
        with self.cond:
            # Every line before the exit: the readers reach EOF as soon as the last holder
            # of the pipe is gone, which is at once unless a descendant inherited it.
            self.cond.wait_for(lambda: self.streams_open == 0, timeout=DRAIN_SECONDS)
            self.exit_code = code
            self.exited_at = time.monotonic()
            self.cond.notify_all()
        self.say(f"the node exited with code {code}")
        threading.Thread(target=self._orphan_timer, daemon=True).start()

    def _orphan_timer(self) -> None:
        if not self.done.wait(ORPHAN_SECONDS):
            self.say(f"no keeper collected the node's exit in {ORPHAN_SECONDS:g} s; leaving")
            self.done.set()

    def stop_node(self, why: str) -> None:
        """Graceful stop of the node's group, kill after the stop timeout; then done."""
        if self.stopping.is_set():
            return
        self.stopping.set()
        proc = self.proc
        if proc is not None and proc.poll() is None:
            self.say(f"{why}: stopping the node (pid {proc.pid})")
            failed = _graceful(proc.pid)
            if failed:
                self.say(failed)
            try:
                proc.wait(self.spec.stop_timeout)
            except subprocess.TimeoutExpired:
                self.say(f"the node did not stop in {self.spec.stop_timeout:g} s: killing it")
                _kill_group(proc)
                proc.wait()
            # A keeper still attached gets the node's last lines and its exit before the
            # shim leaves (the sender sets ``done`` once it delivered them).
            self.done.wait(DRAIN_SECONDS + DELIVER_SECONDS)
        self.done.set()

    def _watch_anchor(self) -> None:
        if anchor.wait_for_exit(self.spec.anchor_pid, self.done):
            self.stop_node(f"the launcher (pid {self.spec.anchor_pid}) is gone")

    # -- keepers -------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self.done.is_set():
            try:
                conn = self.listener.accept()
            except OSError as exc:  # a client that left at once
                if self.done.is_set():
                    return
                self.say(f"a connection failed: {exc!r}")
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: Connection) -> None:
        try:
            # The same challenge, both ways, as Listener(authkey=...) and Client(authkey=...).
            deliver_challenge(conn, self.authkey)
            answer_challenge(conn, self.authkey)
            first = conn.recv()
        except (EOFError, OSError, AuthenticationError) as exc:
            if isinstance(exc, AuthenticationError):
                self.say("refused a connection that did not know the key")
            conn.close()
            return
        if not isinstance(first, dict) or first.get("op") != protocol.ATTACH:
            conn.close()
            return
        assert self.proc is not None
        hello = {
            "ev": protocol.HELLO,
            "format": protocol.FORMAT,
            "shim_pid": os.getpid(),
            "node_pid": self.proc.pid,
            "node_start": node_start_time(self.proc.pid),
            "ops": list(protocol.OPS),
        }
        expected = first.get("expect")
        if isinstance(expected, dict) and (
            expected.get("node_pid"),
            expected.get("node_start"),
        ) != (hello["node_pid"], hello["node_start"]):
            # Not the node that keeper is looking for: it gets the hello to say so, and
            # no line leaves the backlog, nor is the attached keeper displaced.
            with contextlib.suppress(OSError):
                conn.send(hello)
            conn.close()
            return
        session = Session(conn)
        with self.cond:
            old, self.session = self.session, session
            if old is not None:  # a keeper that died without a word: its successor wins
                old.closed = True
                with contextlib.suppress(OSError):
                    old.conn.close()
            self.cond.notify_all()
        with session.send_lock:
            try:
                conn.send(hello)
            except OSError:
                session.closed = True
        threading.Thread(target=self._send, args=(session,), daemon=True).start()
        try:
            while not session.closed:
                message = conn.recv()
                op = message.get("op") if isinstance(message, dict) else None
                if op == protocol.STOP and self.proc is not None and self.proc.poll() is None:
                    self.say(f"the keeper asked to stop the node (pid {self.proc.pid})")
                    failed = _graceful(self.proc.pid)
                    if failed:
                        self.say(failed)
                if op == protocol.DETACH:
                    with session.send_lock:
                        session.closed = True
                        with self.cond:
                            next_seq = self.backlog.next_seq_to_send()
                            self.cond.notify_all()
                        conn.send({"ev": protocol.DETACHED, "next_seq": next_seq})
        except (EOFError, OSError):
            pass
        finally:
            with self.cond:
                session.closed = True
                if self.session is session:
                    self.session = None
                self.cond.notify_all()
            with contextlib.suppress(OSError):
                conn.close()

    def _send(self, session: Session) -> None:
        while True:
            with self.cond:
                self.cond.wait_for(
                    lambda: (
                        session.closed
                        or len(self.backlog) > 0
                        or self.backlog.dropped > 0
                        or self.exit_code is not None
                    )
                )
                if session.closed:
                    return
                entries = self.backlog.peek(protocol.LINES_PER_MESSAGE)
                dropped = self.backlog.take_dropped()
                exit_code = self.exit_code if not entries else None
            messages: list[dict[str, Any]] = []
            if dropped:
                messages.append({"ev": protocol.DROPPED, "count": dropped})
            for stream, run in groupby(entries, key=lambda e: e.stream):
                run = list(run)
                messages.append(
                    {
                        "ev": protocol.LINES,
                        "stream": stream,
                        "first_seq": run[0].seq,
                        "lines": [e.line for e in run],
                    }
                )
            if exit_code is not None:
                messages.append({"ev": protocol.EXIT, "code": exit_code})
            with session.send_lock:
                if session.closed:
                    return
                try:
                    for message in messages:
                        session.conn.send(message)
                except OSError:
                    session.closed = True
                    return
                with self.cond:
                    if entries:
                        self.backlog.remove_through(entries[-1].seq)
            if exit_code is not None:
                self.say("the node's exit was delivered to the keeper")
                self.done.set()
                return


def _graceful(pid: int) -> str | None:
    """The node's graceful stop signal, to its whole process group: SIGTERM, or on Windows
    CTRL_BREAK (the node is on the shim's console, see ``_ensure_console``). Returns why
    it could not be sent, or None.

    Windows: GenerateConsoleCtrlEvent itself, never ``os.kill``, which falls back to
    TerminateProcess(pid, 1) when the event cannot be sent: a "graceful" stop that kills
    (seen under Wine, whose console implements only CTRL_C_EVENT)."""
    if os.name == "nt":
        import ctypes

        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
        if kernel32.GenerateConsoleCtrlEvent(1, pid):  # CTRL_BREAK_EVENT
            return None
        return f"CTRL_BREAK could not be sent (Windows error {ctypes.get_last_error()})"  # type: ignore[attr-defined]
    try:
        os.killpg(pid, signal.SIGTERM)
    except OSError as exc:
        return f"SIGTERM could not be sent: {exc}"
    return None


def _ensure_console() -> None:
    """Windows: a console for the node to share, so that CTRL_BREAK can reach it. The
    keeper starts the shim detached (no console); in a service this console is never
    shown (session 0)."""
    import ctypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    if not kernel32.GetConsoleWindow():
        kernel32.AllocConsole()  # fails harmlessly if there is one


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    if os.name == "nt":
        proc.kill()
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(json.dumps({"error": "usage: python -m nodekeeper.nodeshim SPEC.json"}), flush=True)
        return 2
    try:
        spec = protocol.ShimSpec.read(args[0])
        if spec.format != protocol.FORMAT:
            raise ValueError(f"spec format {spec.format}, this shim speaks {protocol.FORMAT}")
        shim = Shim(spec)
        ready = shim.start()
    except (OSError, ValueError, TypeError, KeyError) as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        return 1
    with contextlib.suppress(OSError):
        os.unlink(args[0])  # it holds the node's environment: not left lying around
    print(json.dumps(ready), flush=True)
    _detach_stdout()
    if os.name != "nt":
        signal.signal(
            signal.SIGTERM,
            lambda *_: threading.Thread(target=shim.stop_node, args=("SIGTERM",)).start(),
        )
    else:
        # The CTRL_BREAK the shim sends its node reaches every process on the console
        # under Wine, the shim too; it must not end the shim (and the node with its job).
        signal.signal(signal.SIGBREAK, signal.SIG_IGN)  # type: ignore[attr-defined]
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    shim.done.wait()
    return 0


def _detach_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in (1, 2):
            os.dup2(devnull, fd)
    finally:
        os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
