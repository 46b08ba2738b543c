"""GET / of the control plane against nginx serving the same bytes, in the same run.

    .venv/bin/python bench/controlplane_get.py [--duration 10] [--connections 50] [--rounds 3]

Both servers get one process (nginx: worker_processes 1) and wrk one thread, so each
side has one core of the two. Rounds alternate between the two servers and the median
is reported, because this machine is noisy. Also measured: the 304 path (If-None-Match)
and p99 latency at a fixed 1,000 requests/s (hey: 10 workers x 100 requests/s).
Targets: throughput >= 0.5 x nginx; p99 <= 10 ms at 1,000 requests/s.

On two cores one wrk thread can be the limit for both servers, so requests per
CPU-second that the server process itself spent are printed too: that ratio shows the
cost per request even when the load generator saturates first.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.server.controlplane import ControlPlaneProcess  # noqa: E402
from tests.server.releases import release_zip  # noqa: E402
from tests.support import free_port  # noqa: E402

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  server {{
    listen 127.0.0.1:{port};
    root {dir}/www;
    location = / {{ default_type application/json; try_files /doc.json =404; }}
  }}
}}
"""


def need(tool: str) -> str:
    path = shutil.which(tool)
    if not path:
        sys.exit(f"{tool} is not installed: run `make system-packages`")
    return path


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        t = psutil.Process(pid).cpu_times()
        total += t.user + t.system
    return total


def wrk(
    url: str, pids: list[int], duration: int, connections: int, header: str | None = None
) -> tuple[float, float]:
    """(requests/s, requests per CPU-second the server spent)."""
    before = cpu_seconds(pids)
    args = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", url]
    if header:
        args[1:1] = ["-H", header]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out and header is None:
        raise RuntimeError(f"errors during the run:\n{out}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    spent = cpu_seconds(pids) - before
    return rate, rate * duration / spent


def hey_p99(url: str, duration: int) -> tuple[float, float]:
    out = subprocess.run(
        ["hey", "-z", f"{duration}s", "-c", "10", "-q", "100", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    p99 = float(re.search(r"99%+ in ([\d.]+) secs", out).group(1)) * 1000
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return p99, rps


def publish_realistic(cp: ControlPlaneProcess, work: Path) -> None:
    """Two processes, three platforms each, one rollout ramping: a realistic document."""
    from nodekeeper.server.client import AdminClient

    client = AdminClient(cp.url, cp.token)
    for process in ("storagenode", "nodekeeper"):
        for version in ("1.104.5", "1.105.2"):
            files = {}
            for platform in ("linux_amd64", "linux_arm64", "windows_amd64"):
                path = work / f"{process}_{version}_{platform}.zip"
                # A real release zip: the control plane refuses anything else (issue 9).
                release_zip(path, version, process=process, padding=4096)
                path.chmod(0o644)
                files[platform] = str(path)
            client.publish(process, version, files)
        client.request(
            "POST",
            f"/v1/admin/processes/{process}/rollout",
            json={"version": "1.105.2", "rate_per_day": 10},
        )
    client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for tool in ("wrk", "hey", "nginx"):
        need(tool)

    work = Path(tempfile.mkdtemp(prefix="nk-bench-"))
    work.chmod(0o755)  # nginx workers run as an unprivileged user
    # A process of its own, as in production: the bench measures its CPU.
    cp = ControlPlaneProcess(work / "cp", ramp_tick=60.0, poll_interval=1.0)
    cp.start()
    nginx = None
    try:
        publish_realistic(cp, work)
        doc = httpx.get(cp.url + "/")
        (work / "www").mkdir()
        (work / "www" / "doc.json").write_bytes(doc.content)
        port = free_port()
        (work / "nginx.conf").write_text(NGINX_CONF.format(dir=work, port=port))
        nginx = subprocess.Popen(["nginx", "-c", str(work / "nginx.conf")])
        nginx_url = f"http://127.0.0.1:{port}/"
        for _ in range(100):
            try:
                if httpx.get(nginx_url).content == doc.content:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        check = httpx.get(nginx_url)
        if check.content != doc.content:
            sys.exit(f"nginx does not serve the document: HTTP {check.status_code}")
        nginx_etag = check.headers["etag"]
        ours_etag = doc.headers["etag"]
        digest = hashlib.sha256(doc.content).hexdigest()[:12]
        print(f"document: {len(doc.content)} bytes (sha256 {digest}), same bytes on both")
        print(
            f"wrk -t1 -c{args.connections} -d{args.duration}s, {args.rounds} alternating "
            "rounds, median; one server process each"
        )

        ng_pids = [c.pid for c in psutil.Process(nginx.pid).children()]  # the worker
        cp_pids = [cp.proc.pid]
        runs = {
            "ng200": (nginx_url, ng_pids, None),
            "cp200": (cp.url + "/", cp_pids, None),
            "ng304": (nginx_url, ng_pids, f"If-None-Match: {nginx_etag}"),
            "cp304": (cp.url + "/", cp_pids, f"If-None-Match: {ours_etag}"),
        }
        results: dict[str, list[float]] = {k: [] for k in runs}
        per_cpu: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(args.rounds):
            for key, (url, pids, header) in runs.items():
                rate, efficiency = wrk(url, pids, args.duration, args.connections, header)
                results[key].append(rate)
                per_cpu[key].append(efficiency)
        med = {k: statistics.median(v) for k, v in results.items()}
        eff = {k: statistics.median(v) for k, v in per_cpu.items()}
        ng_p99, ng_rate = hey_p99(nginx_url, args.duration)
        cp_p99, cp_rate = hey_p99(cp.url + "/", args.duration)

        print()
        print(f"{'':28}{'nginx':>12}{'control plane':>16}{'ratio':>8}")
        print(
            f"{'GET / 200 (req/s)':28}{med['ng200']:>12,.0f}{med['cp200']:>16,.0f}"
            f"{med['cp200'] / med['ng200']:>8.2f}   target >= 0.50"
        )
        print(
            f"{'GET / 304 (req/s)':28}{med['ng304']:>12,.0f}{med['cp304']:>16,.0f}"
            f"{med['cp304'] / med['ng304']:>8.2f}"
        )
        print(
            f"{'p99 at 1,000 req/s (ms)':28}{ng_p99:>12.2f}{cp_p99:>16.2f}{'':>8}   target <= 10 ms"
        )
        print(f"{'  achieved rate (req/s)':28}{ng_rate:>12,.0f}{cp_rate:>16,.0f}")
        print(
            f"{'200 per server CPU-second':28}{eff['ng200']:>12,.0f}{eff['cp200']:>16,.0f}"
            f"{eff['cp200'] / eff['ng200']:>8.2f}"
        )
        print(
            f"{'304 per server CPU-second':28}{eff['ng304']:>12,.0f}{eff['cp304']:>16,.0f}"
            f"{eff['cp304'] / eff['ng304']:>8.2f}"
        )
        print("rounds (req/s):", {k: [round(x) for x in v] for k, v in results.items()})
    finally:
        if nginx:
            nginx.terminate()
            nginx.wait()
        cp.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
