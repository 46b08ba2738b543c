"""The local system's parts: control plane (in this process), node set-up, keeper process.

Who ends what (docs/decisions/035-quickstart-lifecycle.md): the control plane is a thread of
quickstart, so it ends with it; the keeper is a child process that quickstart stops
gracefully on every exit it gets to run code for, and that on Linux also gets SIGTERM
from the kernel when quickstart dies without that chance (kill -9, a crash of the
interpreter): PR_SET_PDEATHSIG. The keeper stops the node (and its own parent-death
signal takes the node if the keeper itself is killed). What is left anyway is ended by
the next run (:mod:`nodekeeper.quickstart.leftovers`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import tomli_w

from nodekeeper.cli.errors import EXIT_USAGE, CommandError
from nodekeeper.server.auth import load_admin_token
from nodekeeper.server.client import AdminClient
from nodekeeper.server.runner import build_server
from nodekeeper.server.settings import ServerSettings
from nodekeeper.version.platforms import this_platform

PORTS_FILE = "ports.json"
PR_SET_PDEATHSIG = 1


def _load_prctl() -> Any:
    # Resolved here, in the parent: between fork and exec only async-signal-safe work.
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
    except OSError:
        return None


_prctl = _load_prctl()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Ports:
    """Chosen once and kept, so a second quickstart finds its node and keeper again."""

    node: int
    node_control: int
    keeper_status: int

    @classmethod
    def load_or_choose(cls, data_dir: Path) -> Ports:
        path = data_dir / PORTS_FILE
        if path.exists():
            return cls(**json.loads(path.read_text()))
        ports = cls(_free_port(), _free_port(), _free_port())
        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(ports.__dict__))
        return ports


class ControlPlaneThread:
    """The control plane served from a thread of this process."""

    def __init__(self, data_dir: Path, host: str, port: int) -> None:
        self.url = f"http://{host}:{port}"
        token, _ = load_admin_token(None, data_dir)
        self.token_source = token.source
        settings = ServerSettings(
            db_url=f"sqlite:///{data_dir / 'control-plane.db'}",
            data_dir=data_dir,
            public_url=self.url,
            admin_token=token,
            ramp_tick=1.0,  # the demo ramps in seconds, not hours
        )
        # Quiet: the live view owns the terminal.
        self._server = build_server(settings, host, port, log_level="warning")
        self._thread = threading.Thread(target=self._server.run, name="control-plane", daemon=True)
        self.admin = AdminClient(self.url, token.value)

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise CommandError(
                    f"the control plane could not listen on {self.url} (is the port in use? "
                    "pass --listen HOST:PORT)",
                    EXIT_USAGE,
                )
            time.sleep(0.05)

    def stop(self) -> None:
        self.admin.close()
        self._server.should_exit = True
        self._thread.join(15)

    def status(self) -> list[dict[str, Any]]:
        return self.admin.request("GET", "/v1/admin/status")

    def publish_everywhere(self, process: str, version: str, artifact: Path) -> None:
        # The reference node is pure Python: one zip runs on every platform's runtime.
        platforms = {this_platform(), "linux_amd64", "windows_amd64"}
        self.admin.publish(process, version, {p: str(artifact) for p in sorted(platforms)})


def set_up_node(config_dir: Path, storage_dir: Path, ports: Ports) -> None:
    """`storagenode setup`, once: the keeper will not run a node that is not set up."""
    if (config_dir / "config.toml").exists():
        return
    result = subprocess.run(
        [
            sys.executable, "-m", "storagenode", "setup",
            "--config-dir", str(config_dir),
            "--storage-dir", str(storage_dir),
            "--allocated", "1 GB",
            "--listen", f"127.0.0.1:{ports.node}",
            "--control-listen", f"127.0.0.1:{ports.node_control}",
        ],
        capture_output=True,
        text=True,
    )  # fmt: skip
    if result.returncode != 0:
        raise CommandError(f"storagenode setup failed: {result.stderr.strip()}")


def write_keeper_config(path: Path, keeper_dir: Path, control_plane: str, ports: Ports) -> None:
    config = {
        "data_dir": str(keeper_dir),
        "node": {"config_dir": str(keeper_dir / "storagenode")},
        "probe": {
            "url": f"http://127.0.0.1:{ports.node_control}/pulse",
            "interval_seconds": 2.0,
            "start_grace_seconds": 30.0,
        },
        "restart": {"backoff_initial_seconds": 1.0},
        # The node set up above, not the default 127.0.0.1:7778 (maybe another real node).
        "stop": {"shutdown_url": f"http://127.0.0.1:{ports.node_control}/shutdown"},
        "status": {"listen": f"127.0.0.1:{ports.keeper_status}"},
        "update": {
            "server": control_plane,
            "interval_seconds": 5.0,
            "first_check": "now",
            "backoff_initial_seconds": 2.0,
            "backoff_max_seconds": 10.0,
            "probation_seconds": 8.0,
        },
    }
    path.write_text(tomli_w.dumps(config))


def _die_with(parent: int) -> Any:
    """Run in the keeper between fork and exec: SIGTERM (a graceful stop: the keeper then
    stops the node) when quickstart dies, however it dies."""
    prctl = _prctl

    def setup() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # quickstart died before prctl took effect
            os._exit(1)

    return setup


class KeeperProcess:
    """`nodekeeper run` as its own process, the way a service manager would start it."""

    def __init__(self, config: Path, log: Path, status_port: int) -> None:
        self.config = config
        self.log_path = log
        self.status_url = f"http://127.0.0.1:{status_port}/status"
        self.proc: subprocess.Popen | None = None

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "nodekeeper", "run", "--config", str(self.config)]

    def start(self) -> None:
        """From the main thread: the parent-death signal fires when the thread that
        started the child ends, not the process."""
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # Its own session: Ctrl-C or a hang-up of this terminal reaches only us, and we
            # stop the keeper in order.
            start_new_session=os.name == "posix",
            preexec_fn=_die_with(os.getpid()) if _prctl is not None else None,
        )

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def status(self) -> dict[str, Any] | None:
        try:
            return httpx.get(self.status_url, timeout=2.0).json()
        except (httpx.HTTPError, ValueError):
            return None

    def last_words(self, limit: int = 4096) -> str:
        """The last line the keeper wrote (why it exited, when it says so)."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(max(0, log.seek(0, os.SEEK_END) - limit))
                lines = log.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return ""
        return next((line.strip() for line in reversed(lines) if line.strip()), "")

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def stop(self, timeout: float = 40.0) -> None:
        """Graceful: the keeper stops the node within its stop timeout, then exits."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # TerminateProcess on Windows
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
