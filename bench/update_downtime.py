"""Update downtime: how long the node is unreachable while the keeper updates it.

    .venv/bin/python bench/update_downtime.py [--updates 5]

A real control plane, the reference node (set up in a temporary directory) and a keeper
process with an ``[update]`` table. Each update publishes the next version and rolls it
out to 100 %; a poller in this process asks the node's pulse every 2 ms. Downtime = the
first pulse answered by the new version − the last pulse answered by the old one (the
old node answers until its very end, "stopping": true included).

Baseline, measured in the same run with the same poller and the same installed
versions: the node's own stop plus cold start, done by hand without the keeper (POST
/shutdown, wait for the process to exit, start the next version, wait for its first
pulse). Target: keeper downtime / baseline <= 1.2 (median of each).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.nodes import setup_node  # noqa: E402
from tests.update_machine.lab import Lab  # noqa: E402

from nodekeeper.updater.machine import install_manifest  # noqa: E402
from nodekeeper.version.manifest import run_argv  # noqa: E402


class Poller:
    """Asks the pulse every 2 ms; remembers when each version last/first answered."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answers: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        with httpx.Client(timeout=0.5) as client:
            while not self._stop.is_set():
                try:
                    r = client.get(self.url)
                    if r.status_code == 200:
                        self.answers.append((time.monotonic(), r.json()["version"]))
                except (httpx.HTTPError, ValueError, KeyError):
                    pass
                time.sleep(0.002)

    def gap(self, old: str, new: str) -> float:
        last_old = max(t for t, v in self.answers if v == old)
        first_new = min(t for t, v in self.answers if v == new)
        return first_new - last_old

    def wait_for(self, version: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.answers and self.answers[-1][1] == version:
                return
            time.sleep(0.01)
        raise SystemExit(f"the node never answered as {version}")


def keeper_updates(lab: Lab, count: int) -> list[float]:
    lab.publish("1.0.0")
    # Probation long enough that a commit never overlaps the next switch's measurement.
    lab.start_keeper(update={"probation_seconds": 1.0, "interval_seconds": 0.5})
    lab.wait_running("1.0.0", timeout=60)
    gaps = []
    with Poller(f"{lab.node.control_url}/pulse") as poller:
        for n in range(1, count + 1):
            old, new = f"1.0.{n - 1}", f"1.0.{n}"
            lab.release(new)
            lab.wait_running(new, timeout=60)
            gaps.append(poller.gap(old, new))
    return gaps


def manual_swaps(lab: Lab, count: int) -> list[float]:
    """Stop + cold start by hand, on a node of its own, with the keeper's installs."""
    node = setup_node(lab.root / "manual")
    versions = lab.data_dir / "versions" / "storagenode"
    installed = sorted((p for p in versions.iterdir() if "." in p.name), key=lambda p: p.name)
    argvs = []
    for path in installed[-2:]:
        argv = run_argv(
            install_manifest(path),
            str(path),
            sys.executable,
            ["run", "--config-dir", str(node.config_dir)],
        )
        argvs.append((path.name, argv))
    gaps = []
    token = node.token
    with Poller(f"{node.control_url}/pulse") as poller:
        proc = subprocess.Popen(argvs[0][1], stderr=subprocess.DEVNULL)
        poller.wait_for(argvs[0][0])
        for n in range(count):
            old, new = argvs[n % 2], argvs[(n + 1) % 2]
            httpx.post(
                f"{node.control_url}/shutdown",
                headers={"Authorization": f"Bearer {token}"},
                timeout=5,
            )
            proc.wait(30)
            proc = subprocess.Popen(new[1], stderr=subprocess.DEVNULL)
            poller.wait_for(new[0])
            gaps.append(poller.gap(old[0], new[0]))
            time.sleep(0.3)
        httpx.post(
            f"{node.control_url}/shutdown", headers={"Authorization": f"Bearer {token}"}, timeout=5
        )
        proc.wait(30)
    return gaps


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--updates", type=int, default=5)
    args = parser.parse_args()
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        os.environ.pop(name, None)
    with tempfile.TemporaryDirectory(prefix="nk-downtime-") as tmp:
        lab = Lab(Path(tmp))
        try:
            updates = keeper_updates(lab, args.updates)
            for keeper in lab.keepers:
                keeper.stop()
            manual = manual_swaps(lab, args.updates)
        finally:
            lab.close()
    ms = lambda xs: ", ".join(f"{x * 1000:.0f}" for x in xs)  # noqa: E731
    keeper_median = statistics.median(updates)
    manual_median = statistics.median(manual)
    ratio = keeper_median / manual_median
    print(f"command: {' '.join([os.path.relpath(sys.executable), *sys.argv])}")
    print(f"keeper update downtime (ms): {ms(updates)}; median {keeper_median * 1000:.0f}")
    print(f"node stop + cold start alone (ms): {ms(manual)}; median {manual_median * 1000:.0f}")
    print(f"ratio {ratio:.2f} (target <= 1.2): {'ok' if ratio <= 1.2 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
