"""Update downtime: how long the node is unreachable while the keeper updates it.

    .venv/bin/python bench/update_downtime.py [--updates 9]

A real control plane, the reference node (set up in a temporary directory) and a keeper
process with an ``[update]`` table. Each update publishes the next version and rolls it
out to 100 %; a poller in this process asks the node's pulse every 2 ms. Downtime = the
first pulse answered by the new version − the last pulse answered by the old one (the
old node answers until its very end, "stopping": true included).

Baseline, measured in the same run, interleaved with the updates, with the same kind of
poller and the same installed versions: the node's own stop plus cold start, done by
hand without the keeper on a second node (POST /shutdown, wait for the process to exit,
start the next version at the priority the keeper uses, wait for its first pulse).
Target: keeper downtime / baseline <= 1.2 (median of each).
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
from tests.updater.lab import Lab  # noqa: E402

from nodekeeper.updater.installs import install_manifest  # noqa: E402
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

    def gap(self, old: str, new: str, since: float = 0.0) -> float:
        """From the last answer of ``old`` to the first of ``new``, both after ``since``."""
        answers = [(t, v) for t, v in self.answers if t >= since]
        first_new = min(t for t, v in answers if v == new)
        last_old = max(t for t, v in answers if v == old and t < first_new)
        return first_new - last_old

    def wait_for(self, version: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.answers and self.answers[-1][1] == version:
                return
            time.sleep(0.01)
        raise SystemExit(f"the node never answered as {version}")


class ManualNode:
    """The same installed versions run by hand, on a node of its own: stop (POST
    /shutdown, wait for the exit) then cold start, as the node's own best case. It runs
    at the priority the keeper gives the node (nice 10 by default), so that the ratio
    measures the keeper, not the scheduler."""

    def __init__(self, lab: Lab, nice: int) -> None:
        self.node = setup_node(lab.root / "manual")
        self.versions = lab.data_dir / "versions" / "storagenode"
        self.nice = nice
        self.proc: subprocess.Popen[bytes] | None = None
        self.version: str | None = None
        self.poller = Poller(f"{self.node.control_url}/pulse").__enter__()

    def argv(self, version: str) -> list[str]:
        path = self.versions / version
        args = ["run", "--config-dir", str(self.node.config_dir)]
        return run_argv(install_manifest(path), str(path), sys.executable, args)

    def start(self, version: str) -> None:
        nice = self.nice
        self.proc = subprocess.Popen(
            self.argv(version), stderr=subprocess.DEVNULL, preexec_fn=lambda: os.nice(nice)
        )
        self.version = version
        self.poller.wait_for(version)

    def stop(self) -> None:
        httpx.post(
            f"{self.node.control_url}/shutdown",
            headers={"Authorization": f"Bearer {self.node.token}"},
            timeout=5,
        )
        assert self.proc is not None
        self.proc.wait(30)

    def swap(self, new: str) -> float:
        old, since = self.version, time.monotonic()
        self.stop()
        self.start(new)
        assert old is not None
        return self.poller.gap(old, new, since)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.stop()
        self.poller.__exit__()


def run(lab: Lab, count: int) -> tuple[list[float], list[float]]:
    """Keeper updates and manual swaps, interleaved so that both see the same load."""
    lab.publish("1.0.0")
    # Probation long enough that a commit never overlaps the next switch's measurement.
    lab.start_keeper(update={"probation_seconds": 1.0, "interval_seconds": 0.5})
    lab.wait_running("1.0.0", timeout=60)
    nice = 10 if lab.settings.get("limits", {}).get("below_normal_priority", True) else 0
    updates: list[float] = []
    manual: list[float] = []
    hand: ManualNode | None = None
    with Poller(f"{lab.node.control_url}/pulse") as poller:
        try:
            for n in range(1, count + 1):
                old, new = f"1.0.{n - 1}", f"1.0.{n}"
                since = time.monotonic()
                lab.release(new)
                lab.wait_running(new, timeout=60)
                updates.append(poller.gap(old, new, since))
                if hand is None:
                    hand = ManualNode(lab, nice)
                    hand.start(old)
                manual.append(hand.swap(new))
        finally:
            if hand is not None:
                hand.close()
    return updates, manual


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--updates", type=int, default=9)
    args = parser.parse_args()
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        os.environ.pop(name, None)
    with tempfile.TemporaryDirectory(prefix="nk-downtime-") as tmp:
        lab = Lab(Path(tmp))
        try:
            updates, manual = run(lab, args.updates)
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
