"""Download + verify of a large artifact against `curl | sha256sum`, and resume cost.

    .venv/bin/python bench/update_download.py [--size-mib 256] [--rounds 3]

nginx (one worker, sendfile; a CDN stand-in, as artifacts are served from any static
host) serves one random file on loopback. Each round times, on the same file from the
same server, `curl -s URL | sha256sum` and the keeper's path: `download` (streamed to a
.part file with sha256 computed on the way, free-space check, size cap) then
`verify_download` (compare, rename). Rounds alternate and the median is reported,
because this machine is shared. Target: keeper throughput >= 0.9 x curl | sha256sum.

Then the transfer is cut half-way by a relay that closes both connections after half
the file, and resumed through a clean relay. "Fetched again" is what the keeper received
twice (both attempts' body bytes minus the file size); target <= 1 MiB. nginx's own
log gives what it sent in total, which also counts bytes lost in socket buffers at
the cut (that part is the network's, not the resume's).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import free_port  # noqa: E402

from nodekeeper.updater.download import (  # noqa: E402
    DownloadSettings,
    download,
    make_client,
    part_path,
)
from nodekeeper.updater.errors import DownloadFailed  # noqa: E402
from nodekeeper.updater.verify import verify_download  # noqa: E402
from nodekeeper.version.schema import Artifact  # noqa: E402

MiB = 1024 * 1024
NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 64; }}
http {{
  log_format sent '$status $body_bytes_sent "$http_range"';
  access_log {dir}/access.log sent;
  sendfile on;
  server {{ listen 127.0.0.1:{port}; root {dir}/www; }}
}}
"""


def need(tool: str) -> str:
    path = shutil.which(tool)
    if not path:
        sys.exit(f"{tool} is not installed: run `make system-packages`")
    return path


def make_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(left, 4 * MiB))
            digest.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def wait_port(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    sys.exit("nginx did not start")


def time_curl(url: str, expected: str) -> float:
    started = time.perf_counter()
    out = subprocess.run(
        ["bash", "-o", "pipefail", "-c", f"curl -sS {shlex.quote(url)} | sha256sum"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    elapsed = time.perf_counter() - started
    if not out.startswith(expected):
        sys.exit(f"curl | sha256sum gave {out!r}, expected {expected}")
    return elapsed


def time_curl_raw(url: str) -> float:
    """curl alone into /dev/null: the transfer's ceiling on this machine, for context."""
    started = time.perf_counter()
    subprocess.run(["curl", "-sS", "-o", "/dev/null", url], check=True)
    return time.perf_counter() - started


def time_keeper(artifact: Artifact, downloads: Path) -> float:
    part = part_path(downloads, "bench", "1.0.0", "linux_amd64")
    started = time.perf_counter()
    with make_client(DownloadSettings()) as client:
        final = verify_download(download(client, artifact, part), artifact)
    elapsed = time.perf_counter() - started
    final.unlink()
    return elapsed


class CuttingRelay:
    """A TCP relay to the origin that closes both sides after forwarding ``cut_after``
    response bytes on its first connection; later connections pass through."""

    def __init__(self, origin_port: int, cut_after: int) -> None:
        self.origin_port = origin_port
        self.cut_after = cut_after
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            limit = self.cut_after if self.connections == 1 else None
            threading.Thread(target=self._relay, args=(client, limit), daemon=True).start()

    def _relay(self, client: socket.socket, limit: int | None) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.origin_port))
        threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
        forwarded = 0
        try:
            while data := upstream.recv(256 * 1024):
                if limit is not None and forwarded + len(data) >= limit:
                    client.sendall(data[: limit - forwarded])
                    break
                client.sendall(data)
                forwarded += len(data)
        except OSError:
            pass
        finally:
            for s in (client, upstream):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        self.listener.close()


def nginx_body_bytes(log: Path) -> int:
    return sum(int(line.split()[1]) for line in log.read_text().splitlines() if line.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    need("nginx")
    need("curl")
    size = args.size_mib * MiB
    work = Path(tempfile.mkdtemp(prefix="nk-bench-dl-"))
    work.chmod(0o755)  # nginx workers run as an unprivileged user
    (work / "www").mkdir()
    (work / "www").chmod(0o755)
    nginx = None
    try:
        sha = make_file(work / "www" / "artifact.zip", size)
        (work / "www" / "artifact.zip").chmod(0o644)
        port = free_port()
        (work / "nginx.conf").write_text(NGINX_CONF.format(dir=work, port=port))
        nginx = subprocess.Popen(["nginx", "-c", str(work / "nginx.conf")])
        wait_port(port)
        url = f"http://127.0.0.1:{port}/artifact.zip"
        artifact = Artifact(url=url, sha256=sha, size=size)
        downloads = work / "downloads"

        time_curl(url, sha)  # warm the page cache for both
        curl_times, keeper_times, raw_times = [], [], []
        for _ in range(args.rounds):
            curl_times.append(time_curl(url, sha))
            keeper_times.append(time_keeper(artifact, downloads))
            raw_times.append(time_curl_raw(url))
        curl_rate = size / MiB / statistics.median(curl_times)
        keeper_rate = size / MiB / statistics.median(keeper_times)

        log = work / "access.log"
        log.write_text("")
        subprocess.run(
            ["nginx", "-c", str(work / "nginx.conf"), "-s", "reopen"],
            check=True,
            capture_output=True,
        )
        time.sleep(0.3)
        relay = CuttingRelay(port, cut_after=size // 2)
        relayed = Artifact(url=f"http://127.0.0.1:{relay.port}/artifact.zip", sha256=sha, size=size)
        part = part_path(downloads, "bench", "1.0.0", "linux_amd64")
        with make_client(DownloadSettings()) as client:
            try:
                download(client, relayed, part)
                sys.exit("the relay did not interrupt the download")
            except DownloadFailed as exc:
                first = exc.received
            second = download(client, relayed, part)
            verify_download(second, relayed).unlink()
        relay.close()
        time.sleep(0.3)  # nginx writes its log line when the request ends
        refetched = first + second.fetched - size
        server_sent = nginx_body_bytes(log)

        def line(label: str, times: list[float]) -> str:
            runs = ", ".join(f"{t:.3f}" for t in times)
            rate = size / MiB / statistics.median(times)
            return f"  {label:<28} {statistics.median(times):6.3f} s {rate:7.1f} MiB/s  ({runs})"

        ratio = keeper_rate / curl_rate
        print(f"command: {' '.join(shlex.quote(a) for a in [sys.executable, *sys.argv])}")
        print(
            f"{args.size_mib} MiB random file, nginx (1 worker) on loopback, median of "
            f"{args.rounds} alternating rounds:"
        )
        print(line("curl | sha256sum", curl_times))
        print(line("keeper download + verify", keeper_times))
        print(line("curl -o /dev/null (context)", raw_times))
        print(
            f"throughput keeper / (curl | sha256sum): {ratio:.2f}  "
            f"(target >= 0.9: {'met' if ratio >= 0.9 else 'NOT met'})"
        )
        print(
            f"interrupted at {first} bytes ({first / size:.0%}); resumed with Range from "
            f"{second.resumed_from}, fetched {second.fetched} more"
        )
        print(
            f"fetched again by the keeper: {refetched} bytes  "
            f"(target <= 1 MiB: {'met' if refetched <= MiB else 'NOT met'})"
        )
        print(
            f"nginx sent {server_sent - size} body bytes beyond the file over both requests "
            "(bytes lost in socket buffers at the cut; the network's, not the resume's)"
        )
    finally:
        if nginx is not None:
            nginx.terminate()
            nginx.wait(10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
