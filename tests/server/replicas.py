"""Several control-plane replicas over one PostgreSQL behind nginx on loopback.

Used by the replica tests and by bench/fleet.py. Each replica is a real `nodekeeper server
run` child process (`ControlPlaneProcess`); they share one database and one artifact
directory, as replicas behind one name would (a shared volume or object store), and all
announce nginx's address as their public URL. nginx runs as a child process from a config
written into the harness's temp dir, with its own pid, log and temp paths: no system
config is read or touched.

nginx's access log records, per request, the time the replica took
(``$upstream_response_time``) and which replica answered (``$upstream_addr``), so a bench
reads server-side latency there, apart from the load generator's own scheduling lag.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.server.controlplane import ControlPlaneProcess
from tests.support import free_port

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 20000; }}
http {{
  log_format timing '$msec $request_method $uri $status $upstream_response_time '
                    '$request_time $upstream_addr';
  access_log {dir}/access.log timing buffer=256k flush=1s;
  client_body_temp_path {dir}/tmp/body;
  proxy_temp_path {dir}/tmp/proxy;
  fastcgi_temp_path {dir}/tmp/fastcgi;
  uwsgi_temp_path {dir}/tmp/uwsgi;
  scgi_temp_path {dir}/tmp/scgi;
  upstream controlplane {{
{servers}
    keepalive 64;
  }}
  server {{
    listen 127.0.0.1:{port} backlog=8192;
    client_max_body_size 0;
    location / {{
      proxy_pass http://controlplane;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_request_buffering off;
      proxy_buffering off;
    }}
  }}
}}
"""


@dataclass(frozen=True)
class LoggedRequest:
    """One line of nginx's access log."""

    at: float  # unix time the request ended
    method: str
    path: str
    status: int
    upstream_seconds: float | None  # the replica's time; None when no replica answered
    total_seconds: float
    upstream: str


def parse_access_log(path: Path) -> list[LoggedRequest]:
    entries = []
    for line in path.read_text().splitlines():
        at, method, uri, status, upstream_time, total, addr = line.split(" ", 6)
        # "-" when nginx answered itself; "0.001, 0.002" when it tried two replicas
        last = upstream_time.split(",")[-1].strip()
        entries.append(
            LoggedRequest(
                float(at),
                method,
                uri,
                int(status),
                None if last == "-" else float(last),
                float(total),
                addr.split(",")[-1].strip(),
            )
        )
    return entries


class Nginx:
    """nginx balancing round-robin over ``upstreams`` (ports on 127.0.0.1)."""

    def __init__(self, work: Path, upstreams: list[int], port: int | None = None) -> None:
        self.work = work
        self.upstreams = upstreams
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def access_log(self) -> Path:
        return self.work / "access.log"

    def start(self, timeout: float = 15.0) -> Nginx:
        binary = shutil.which("nginx")
        if binary is None:
            raise RuntimeError("nginx is not installed: run `make system-packages`")
        (self.work / "tmp").mkdir(parents=True, exist_ok=True)
        self.work.chmod(0o755)  # the workers run as an unprivileged user when we are root
        servers = "\n".join(f"    server 127.0.0.1:{p};" for p in self.upstreams)
        conf = self.work / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=self.work, port=self.port, servers=servers))
        self.proc = subprocess.Popen(
            [binary, "-p", str(self.work), "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=(self.work / "stderr.log").open("wb"),
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {(self.work / 'stderr.log').read_text()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("nginx did not answer /healthz through a replica in time")

    def pids(self) -> list[int]:
        import psutil

        if self.proc is None or self.proc.poll() is not None:
            return []
        return [self.proc.pid, *(c.pid for c in psutil.Process(self.proc.pid).children())]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: fast shutdown, the log buffer is flushed
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class ReplicaSet:
    """``count`` `server run` processes over ``db_url`` and nginx in front of them."""

    def __init__(
        self,
        work: Path,
        db_url: str,
        count: int = 3,
        *,
        ramp_tick: float = 60.0,
        poll_interval: float = 1.0,
        extra_args: list[str] | None = None,
    ) -> None:
        self.work = work
        self.nginx = Nginx(work / "nginx", [free_port() for _ in range(count)])
        artifacts = work / "artifacts"
        self.replicas = [
            ControlPlaneProcess(
                work / f"replica{i}",
                db_url,
                port=port,
                ramp_tick=ramp_tick,
                poll_interval=poll_interval,
                extra_args=[
                    "--public-url",
                    self.nginx.url,
                    "--report-rate",
                    "30",
                    *(extra_args or []),
                ],
            )
            for i, port in enumerate(self.nginx.upstreams)
        ]
        self._artifacts = artifacts
        self._uploads = work / "uploads"

    @property
    def url(self) -> str:
        """Where keepers and admins reach the control plane: nginx."""
        return self.nginx.url

    @property
    def token(self) -> str:
        return self.replicas[0].token or ""

    def start(self) -> ReplicaSet:
        self._artifacts.mkdir(parents=True, exist_ok=True)
        self._uploads.mkdir(parents=True, exist_ok=True)
        try:
            # The first one creates the schema; the others then start in parallel (they
            # would also wait on the migration lock, but a serial first start is faster
            # on two cores than three interpreters contending for it).
            for replica in self.replicas:
                replica.data_dir.mkdir(parents=True, exist_ok=True)
                (replica.data_dir / "artifacts").symlink_to(self._artifacts)
                # An admin's upload (PUT) and its publish (POST) may reach different
                # replicas through a round-robin balancer: they share the upload area.
                (replica.data_dir / "uploads").symlink_to(self._uploads)
            self.replicas[0].start()
            for replica in self.replicas[1:]:
                replica.log = replica.log_path.open("ab")
                replica.proc = subprocess.Popen(
                    [*_python_m(), *replica.argv()],
                    env=replica.env(),
                    stdout=replica.log,
                    stderr=replica.log,
                )
            for replica in self.replicas[1:]:
                replica._wait_until_up(60.0)
            (self.work / "nginx").mkdir(parents=True, exist_ok=True)
            self.nginx.start()
        except BaseException:
            self.stop()
            raise
        return self

    def server_pids(self) -> list[int]:
        return [r.proc.pid for r in self.replicas if r.proc is not None]

    def stop(self) -> None:
        self.nginx.stop()
        for replica in self.replicas:
            replica.stop()

    def documents(self) -> list[tuple[str, str, bytes]]:
        """Every replica's GET / at (nearly) the same moment: (etag, sha256, body)."""
        import hashlib

        out = []
        for replica in self.replicas:
            r = httpx.get(replica.url + "/", timeout=10)
            digest = hashlib.sha256(r.content).hexdigest()
            out.append((r.headers.get("etag", ""), digest, r.content))
        return out

    def __enter__(self) -> ReplicaSet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _python_m() -> list[str]:
    import sys

    return [sys.executable, "-m", "nodekeeper"]
