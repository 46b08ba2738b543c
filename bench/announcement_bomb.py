"""Peak RSS of a real keeper whose check meets a gzip bomb, before and after the fix.

    .venv/bin/python bench/announcement_bomb.py [--before-rev d1cd3c9] [--size-mib 1024]

A loopback server answers ``/`` with 1 GiB of zeros gzip-compressed (~1 MiB on the wire)
and ``Content-Encoding: gzip``. Three real `nodekeeper run` processes check it once each:
the current code against a normal announcement (the reference), the current code against
the bomb, and the code of ``--before-rev`` (the commit before the bounded decoding, taken
with ``git archive``) against the bomb. Each keeper's peak RSS (VmHWM, Linux) is read
after its first check has failed or succeeded, then it is stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zlib
from pathlib import Path

import tomli_w

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import free_port  # noqa: E402

MiB = 1024 * 1024
NORMAL = json.dumps(
    {
        "processes": {
            "storagenode": {
                "minimum": {"version": "1.0.0", "url": "https://cp.example/a"},
                "suggested": {"version": "1.0.0", "url": "https://cp.example/a"},
                "rollout": {"seed": "", "cursor": "00" * 32},
            }
        }
    }
).encode()


def gzip_of_zeros(size: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(MiB)
    parts = [packer.compress(block) for _ in range(size // MiB)]
    return b"".join([*parts, packer.flush()])


def serve(body: bytes, encoding: str | None) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            if encoding:
                self.send_header("Content-Encoding", encoding)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with contextlib.suppress(OSError):  # the keeper stops reading a bomb early
                self.wfile.write(body)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def peak_rss_of_one_check(work: Path, server_url: str, pythonpath: str | None) -> tuple[int, str]:
    """(VmHWM in bytes, the check's outcome) of a keeper that checks once."""
    port = free_port()
    config = work / "keeper.toml"
    settings = {
        "data_dir": str(work / "data"),
        "node": {"command": [sys.executable, "-c", "import time; time.sleep(600)"]},
        "stop": {"timeout_seconds": 2.0, "shutdown_url": ""},
        "status": {"listen": f"127.0.0.1:{port}"},
        "update": {"server": server_url, "first_check": "now", "interval_seconds": 3600.0},
    }
    config.write_bytes(tomli_w.dumps(settings).encode())
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    keeper = subprocess.Popen(
        [sys.executable, "-m", "nodekeeper", "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        outcome = wait_first_check(port)
        hwm = vm_hwm(keeper.pid)
    finally:
        keeper.send_signal(signal.SIGTERM)
        try:
            keeper.wait(60)
        except subprocess.TimeoutExpired:
            keeper.kill()
            keeper.wait(10)
    return hwm, outcome


def wait_first_check(port: int, timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as r:
                last = json.loads(r.read()).get("update", {}).get("last_check")
        except OSError:
            last = None
        if last:
            return "ok" if last.get("ok") else f"refused: {last.get('error', '')[:90]}"
        time.sleep(0.1)
    raise SystemExit("the keeper never finished its first check")


def vm_hwm(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise SystemExit("no VmHWM (Linux only)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before-rev", default="d1cd3c9", help="the code before the fix")
    parser.add_argument("--size-mib", type=int, default=1024, help="the bomb, decoded")
    args = parser.parse_args()
    if not sys.platform.startswith("linux"):
        print("skipped: VmHWM is Linux only")
        return 0
    bomb = gzip_of_zeros(args.size_mib * MiB)
    print(f"bomb: {args.size_mib} MiB of zeros, {len(bomb) / MiB:.2f} MiB gzip-compressed")
    normal, hostile = serve(NORMAL, None), serve(bomb, "gzip")
    with tempfile.TemporaryDirectory() as tmp:
        before_src = Path(tmp) / "before"
        before_src.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", args.before_rev, "src"],
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(before_src)], input=archive, check=True)
        runs = [
            ("now, normal announcement", normal, None),
            ("now, gzip bomb", hostile, None),
            (f"before ({args.before_rev}), gzip bomb", hostile, str(before_src / "src")),
        ]
        for n, (label, httpd, pythonpath) in enumerate(runs):
            work = Path(tmp) / f"run{n}"
            work.mkdir()
            url = f"http://127.0.0.1:{httpd.server_address[1]}"
            hwm, outcome = peak_rss_of_one_check(work, url, pythonpath)
            print(f"{label:<34} peak RSS {hwm / MiB:7.1f} MiB   check {outcome}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
