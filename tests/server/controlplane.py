"""A real control plane on loopback, for tests (and for other suites' fixtures).

`ControlPlane` runs `nodekeeper server run` through `nodekeeper.cli.main` in a thread of
the test process: the same argument checks, token loading, database and uvicorn server
as the real command, answering real HTTP on a loopback port, without ~1-2 s of interpreter
and import start-up per server. Keepers, nodes and clients talk to it exactly as they
would to the process. `cli()` runs admin commands through `main(argv)` too.

`ControlPlaneProcess` is the same interface over a child process, for the tests that are
about the process itself (start-up on a real command line, SIGTERM, exit status); they
carry the `e2e` marker.

The server thread's stderr (start-up lines such as "generated an admin token into ...",
warnings, uvicorn's log) goes to `log_path`, as the child's stderr does, so tests read
the same file either way.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import IO

import httpx

from tests.support import environ, free_port, run_main

TOKEN = "test-admin-token-0123456789"
STOP_SECONDS = 30.0  # a graceful stop; generous for a loaded machine


class _StderrByThread(io.TextIOBase):
    """Stands in for sys.stderr while a control plane starts: writes from a registered
    server thread go to its log file, all others to the stderr that was there before.
    uvicorn's log handlers keep a reference to this object, so they stay routed."""

    def __init__(self) -> None:
        self.files: dict[int, IO[str]] = {}
        self.fallback: IO[str] | None = None

    def _target(self) -> IO[str] | None:
        return self.files.get(threading.get_ident()) or self.fallback or sys.__stderr__

    def write(self, text: str) -> int:
        target = self._target()
        if target is not None and not target.closed:
            target.write(text)
        return len(text)

    def flush(self) -> None:
        target = self._target()
        if target is not None and not target.closed:
            target.flush()


_STDERR = _StderrByThread()
_SERVERS: dict[int, object] = {}  # server thread id -> its uvicorn.Server


def _record_servers() -> None:
    """Wrap nodekeeper.server.runner.build_server (once) so that each server thread's
    uvicorn.Server can be told to exit: the in-process equivalent of SIGTERM."""
    from nodekeeper.server import runner

    if getattr(runner.build_server, "records_servers", False):
        return
    original = runner.build_server

    def build_server(*args, **kwargs):
        server = original(*args, **kwargs)
        _SERVERS[threading.get_ident()] = server
        return server

    build_server.records_servers = True  # type: ignore[attr-defined]
    runner.build_server = build_server


class ControlPlane:
    """`nodekeeper server run` in a thread of this process; start() waits until it answers."""

    def __init__(
        self,
        data_dir: Path,
        db_url: str | None = None,
        *,
        port: int | None = None,
        ramp_tick: float = 0.05,
        poll_interval: float = 0.1,
        token: str | None = TOKEN,
        extra_args: list[str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.db_url = db_url
        self.port = port or free_port()
        self.ramp_tick = ramp_tick
        self.poll_interval = poll_interval
        self.token = token
        self.extra_args = extra_args or []
        self.log_path = data_dir.parent / f"server-{self.port}.log"
        self._thread: threading.Thread | None = None
        self.exit_code: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env_changes(self) -> dict[str, str | None]:
        """What the server and the admin CLI read from the environment."""
        return {"NODEKEEPER_ADMIN_TOKEN": self.token, "NODEKEEPER_SERVER": self.url}

    def env(self) -> dict[str, str]:
        """The environment for a child process (a keeper, the CLI) that talks to us."""
        env = dict(os.environ)
        for name, value in self.env_changes().items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        return env

    def argv(self) -> list[str]:
        args = [
            "server",
            "run",
            "--listen",
            f"127.0.0.1:{self.port}",
            "--data-dir",
            str(self.data_dir),
            "--ramp-tick",
            str(self.ramp_tick),
            "--poll-interval",
            str(self.poll_interval),
            *self.extra_args,
        ]
        if self.db_url:
            args += ["--db", self.db_url]
        return args

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout: float = 60.0) -> ControlPlane:
        _record_servers()
        self.log = self.log_path.open("a", encoding="utf-8", buffering=1)
        self.exit_code = None
        self._thread = threading.Thread(
            target=self._serve, args=(self.argv(),), name=f"control-plane-{self.port}", daemon=True
        )
        previous = sys.stderr
        _STDERR.fallback, sys.stderr = previous, _STDERR
        try:
            # The token is read from the environment while the server starts; the wait
            # below covers that, so the change is undone before the test goes on.
            with environ(self.env_changes()):
                self._thread.start()
                self._wait_until_up(timeout)
        except BaseException:
            self._abandon()
            raise
        finally:
            sys.stderr = previous
            _STDERR.fallback = None
        return self

    def _serve(self, argv: list[str]) -> None:
        me = threading.get_ident()
        _STDERR.files[me] = self.log
        try:
            self.exit_code = run_server_command(argv)
        except BaseException:  # what a crashing process would print before exit 1
            traceback.print_exc(file=self.log)
            self.exit_code = 1
        finally:
            _STDERR.files.pop(me, None)
            _SERVERS.pop(me, None)

    def _wait_until_up(self, timeout: float) -> None:
        """Until /healthz answers; a server that ends first fails with its log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"control plane exited: {self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"control plane did not come up: {self.log_path.read_text()}")

    def _abandon(self) -> None:
        """After a failed start: stop what may have come up; the start's error is what
        the test sees, a failure to stop only adds to the log."""
        try:
            self.stop()
        except RuntimeError as exc:
            print(f"also: {exc}", file=self.log)
        finally:
            self.log.close()

    def stop(self) -> None:
        thread = self._thread
        if thread is None:
            return
        server = _SERVERS.get(thread.ident or -1)
        if server is not None:
            server.should_exit = True  # type: ignore[attr-defined]
        thread.join(STOP_SECONDS)
        if thread.is_alive() and server is not None:
            server.force_exit = True  # type: ignore[attr-defined]
            thread.join(STOP_SECONDS)
        if thread.is_alive():
            raise RuntimeError(f"control plane on port {self.port} did not stop")
        self.log.close()
        self._thread = None

    def admin(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30
        )

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """`nodekeeper ARGS...` against this control plane, through main(argv)."""
        result = run_main(args, self.env_changes())
        if check and result.returncode != 0:
            raise AssertionError(f"nodekeeper {' '.join(args)} failed: {result.stderr}")
        return result

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_server_command(argv: list[str]) -> int:
    """`nodekeeper server run ...` as the console script runs it (argparse's exit too)."""
    from nodekeeper.cli import main

    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1


class ControlPlaneProcess(ControlPlane):
    """The same control plane as a child process `python -m nodekeeper server run`, for
    tests about the process: its command line, start-up output, signals and exit status."""

    proc: subprocess.Popen | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 60.0) -> ControlPlaneProcess:
        self.log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nodekeeper", *self.argv()],
            env=self.env(),
            stdout=self.log,
            stderr=self.log,
        )
        self._wait_until_up(timeout)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log.close()
            self.exit_code = self.proc.returncode
        self.proc = None

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """`python -m nodekeeper ARGS...` as a child process."""
        result = subprocess.run(
            [sys.executable, "-m", "nodekeeper", *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"nodekeeper {' '.join(args)} failed: {result.stderr}")
        return result

    def __enter__(self) -> ControlPlaneProcess:
        return self.start()
