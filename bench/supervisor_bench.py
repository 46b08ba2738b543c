"""The keeper's supervisor: crash-to-restart latency, and the keeper's idle RSS and CPU.

    .venv/bin/python bench/supervisor_bench.py [--crashes 30] [--idle-seconds 60]

1. Crash-to-restart latency beyond the configured backoff (target <= 50 ms median): a
   node that writes the time and exits 1 at once, supervised in this process with a fixed
   0.2 s backoff. Latency = (time the keeper called Platform.start again) - (time the node
   wrote just before exiting) - 0.2 s. Also shown: until the new process is running
   (start() returned: fork, limits, exec done).
2. Idle RSS (target <= 40 MB) and idle CPU over 60 s (target <= 0.5 % of one core) of
   the keeper as its own process (the service entry point `python -m nodekeeper.keeper`,
   and `nodekeeper run` through the full CLI), supervising the reference storage node (set up
   in a temporary directory) with the default probe (HTTP pulse every 10 s) and resource
   sampling (every 5 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil
import tomli_w

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.keeper.conftest import ListSink, free_port  # noqa: E402

from nodekeeper.keeper.config import KeeperConfig  # noqa: E402
from nodekeeper.keeper.supervisor import Supervisor  # noqa: E402
from nodekeeper.platform import current_platform  # noqa: E402
from nodekeeper.platform.base import LaunchSpec, Platform, ProcessHandle  # noqa: E402

BACKOFF = 0.2


class TimedPlatform:
    """The real platform, with the time of each start() call and return noted."""

    def __init__(self, inner: Platform) -> None:
        self._inner = inner
        self.calls: list[float] = []
        self.returns: list[float] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    async def start(self, spec: LaunchSpec) -> ProcessHandle:
        self.calls.append(time.time())
        handle = await self._inner.start(spec)
        self.returns.append(time.time())
        return handle


def crash_latency(crashes: int, workdir: Path) -> tuple[list[float], list[float]]:
    exits = workdir / "exits"
    code = (
        "import os, time\n"
        f"f = open({str(exits)!r}, 'a'); f.write(repr(time.time()) + '\\n'); f.close()\n"
        "os._exit(1)"
    )
    config = KeeperConfig.model_validate(
        {
            "data_dir": str(workdir / "data"),
            "node": {"command": [sys.executable, "-S", "-c", code]},
            "probe": {"kind": "process"},
            "restart": {"backoff_initial_seconds": BACKOFF, "backoff_max_seconds": BACKOFF},
            "status": {"listen": f"127.0.0.1:{free_port()}"},
        }
    )
    platform = TimedPlatform(current_platform())

    async def run() -> None:
        sup = Supervisor(config, platform, sink=ListSink())  # type: ignore[arg-type]
        task = asyncio.create_task(sup.run())
        while len(platform.calls) < crashes + 1:
            await asyncio.sleep(0.05)
        sup.request_shutdown()
        await task

    asyncio.run(run())
    died = [float(x) for x in exits.read_text().split()]
    to_call = [(platform.calls[i + 1] - died[i] - BACKOFF) * 1000 for i in range(crashes)]
    to_running = [(platform.returns[i + 1] - died[i] - BACKOFF) * 1000 for i in range(crashes)]
    return to_call, to_running


SERVICE_ENTRY = ["-m", "nodekeeper.keeper"]  # what the systemd unit / Windows service run
CLI_ENTRY = ["-m", "nodekeeper", "run"]  # the same keeper through the full CLI


def idle_keeper(seconds: float, workdir: Path, entry: list[str]) -> dict[str, float]:
    control, status = free_port(), free_port()
    node_dir = workdir / "node"
    storagenode = str(Path(sys.executable).parent / "storagenode")
    subprocess.run(
        [storagenode, "setup", "--config-dir", str(node_dir), "--storage-dir",
         str(workdir / "pieces"), "--allocated", "1 GB", "--listen",
         f"127.0.0.1:{free_port()}", "--control-listen", f"127.0.0.1:{control}"],
        check=True, capture_output=True,
    )  # fmt: skip
    config = workdir / "keeper.toml"
    config.write_text(
        tomli_w.dumps(
            {
                "data_dir": str(workdir / "data"),
                "node": {"config_dir": str(node_dir)},
                "probe": {"url": f"http://127.0.0.1:{control}/pulse"},
                "stop": {"shutdown_url": f"http://127.0.0.1:{control}/shutdown"},
                "status": {"listen": f"127.0.0.1:{status}"},
            }
        )
    )
    keeper = subprocess.Popen(
        [sys.executable, *entry, "--config", str(config)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{status}/status", timeout=2) as r:
                    if json.loads(r.read())["state"] == "running":
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the reference node never became healthy under the keeper")
            time.sleep(0.2)
        time.sleep(11)  # past the first regular probe and a few samples: steady state
        proc = psutil.Process(keeper.pid)
        before = proc.cpu_times()
        began = time.monotonic()
        time.sleep(seconds)
        after = proc.cpu_times()
        elapsed = time.monotonic() - began
        mem = proc.memory_full_info()
        cpu = (after.user + after.system - before.user - before.system) / elapsed * 100
        return {"rss_mb": mem.rss / 2**20, "uss_mb": mem.uss / 2**20, "cpu_percent": cpu}
    finally:
        keeper.send_signal(signal.SIGTERM)
        code = keeper.wait(60)
        if code != 0:
            print(f"warning: keeper exited {code} on SIGTERM", file=sys.stderr)


def main() -> None:
    # The crash loop this bench provokes on purpose is not news.
    logging.getLogger("nodekeeper.keeper").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crashes", type=int, default=30)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    args = parser.parse_args()
    command = f".venv/bin/python bench/supervisor_bench.py --crashes {args.crashes} " + (
        f"--idle-seconds {args.idle_seconds:g}"
    )
    print(f"command: {command}")
    print(f"machine: {os.cpu_count()} cores, {sys.platform}, Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as tmp:
        to_call, to_running = crash_latency(args.crashes, Path(tmp))
        p90 = statistics.quantiles(to_call, n=10, method="inclusive")[-1]
        print(
            f"crash-to-restart beyond the {BACKOFF * 1000:.0f} ms backoff ({args.crashes} crashes):"
            f" median {statistics.median(to_call):.1f} ms, p90 {p90:.1f} ms,"
            f" max {max(to_call):.1f} ms"
            "  (target <= 50 ms median)"
        )
        print(
            f"  ... until the new node process runs: median {statistics.median(to_running):.1f}"
            f" ms, max {max(to_running):.1f} ms"
        )
    for label, entry in (("python -m nodekeeper.keeper", SERVICE_ENTRY),
                         ("nodekeeper run", CLI_ENTRY)):  # fmt: skip
        with tempfile.TemporaryDirectory() as tmp:
            idle = idle_keeper(args.idle_seconds, Path(tmp), entry)
        print(
            f"keeper idle ({label}) supervising the reference storage node: RSS"
            f" {idle['rss_mb']:.1f} MB (USS {idle['uss_mb']:.1f} MB; target <= 40 MB), CPU"
            f" {max(0.0, idle['cpu_percent']):.3f} % of one core over {args.idle_seconds:g} s"
            " (target <= 0.5 %)"
        )


if __name__ == "__main__":
    main()
