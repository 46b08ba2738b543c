"""A real control-plane process on loopback, for tests (and for other suites' fixtures)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support import free_port

TOKEN = "test-admin-token-0123456789"


class ControlPlane:
    """`nodekeeper server run` as a child process; start() waits until it answers."""

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
        self.proc: subprocess.Popen | None = None
        self.log_path = data_dir.parent / f"server-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("NODEKEEPER_ADMIN_TOKEN", None)
        if self.token is not None:
            env["NODEKEEPER_ADMIN_TOKEN"] = self.token
        env["NODEKEEPER_SERVER"] = self.url
        return env

    def start(self, timeout: float = 20.0) -> ControlPlane:
        args = [
            sys.executable,
            "-m",
            "nodekeeper",
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
        self.log = self.log_path.open("ab")
        self.proc = subprocess.Popen(args, env=self.env(), stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"control plane exited: {self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"control plane did not come up: {self.log_path.read_text()}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log.close()
        self.proc = None

    def admin(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30
        )

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "-m", "nodekeeper", *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"nodekeeper {' '.join(args)} failed: {result.stderr}")
        return result

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
