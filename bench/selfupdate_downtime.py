"""Self-update downtime: how long the node is unreachable while the keeper replaces itself.

    .venv/bin/python bench/selfupdate_downtime.py [--updates 3] [--baseline-rounds 3]

What a user runs: the launcher, a keeper configured for updates (`[update]` pointing at a
real control plane) running the reference storage node it installed from that control
plane, and keeper releases published and made the minimum there, one after another
(1.0.0 -> 1.1.0 -> ...). Each self-update goes the whole way: check, download, verify,
preflight, hand-over, the launcher's probation, commit.

Two pollers in this process, every 5 ms:
- the node's public address (a GET of a piece that does not exist: 404 = it serves); the
  longest gap between two answers during an update is the downtime a satellite sees;
- the keeper's status API; its longest gap is the keeper's own hand-over time.

Baseline, in the same run: the same node stopped gracefully (POST /shutdown, wait for the
exit) and cold-started by hand (until its first pulse), `--baseline-rounds` times.
Target (issue 11): node gap <= 0.1 x (stop + start), median over the updates.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import tomli_w

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.keeper.conftest import fast_settings  # noqa: E402
from tests.nodes import NodeProcess, setup_node  # noqa: E402
from tests.selfupdate.conftest import PROBATION, LauncherProcess, Site, wait_for  # noqa: E402
from tests.selfupdate.keepers import build_keeper, install  # noqa: E402
from tests.server.controlplane import TOKEN, ControlPlane  # noqa: E402
from tests.support import free_port  # noqa: E402

from nodekeeper.launcher.decide import State  # noqa: E402
from nodekeeper.launcher.health import status_answers  # noqa: E402
from nodekeeper.server.client import AdminClient  # noqa: E402
from nodekeeper.version.platforms import this_platform  # noqa: E402
from storagenode.release import build_artifact  # noqa: E402

SAMPLE_SECONDS = 0.005


def node_serves(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=0.5)
    try:
        conn.request("GET", "/pieces/downtime-probe")
        return conn.getresponse().status == 404
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


class Gaps:
    """Polls ``answers()`` every 5 ms in a thread; ``longest()`` is the longest time
    between two answers since ``mark()``."""

    def __init__(self, answers) -> None:  # type: ignore[no-untyped-def]
        self.answers = answers
        self.times: list[float] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.answers():
                with self._lock:
                    self.times.append(time.monotonic())
            time.sleep(SAMPLE_SECONDS)

    def mark(self) -> None:
        with self._lock:
            self.times = self.times[-1:]

    def longest(self) -> float:
        with self._lock:
            times = list(self.times)
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def baseline(node_setup, rounds: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Median graceful stop and median cold start of the node alone."""
    stops, starts = [], []
    for _ in range(rounds):
        began = time.monotonic()
        with NodeProcess(node_setup) as node:
            node.wait_ready()
            starts.append(time.monotonic() - began)
            began = time.monotonic()
            node.shutdown()
            node.wait()
            stops.append(time.monotonic() - began)
    return statistics.median(stops), statistics.median(starts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=3)
    parser.add_argument("--baseline-rounds", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="selfupdate-downtime-") as tmp:
        root = Path(tmp)
        node = setup_node(root / "node", allocated="50 MB")
        own_stop, cold_start = baseline(node, args.baseline_rounds)

        control = f"http://127.0.0.1:{node.control_port}"
        settings = fast_settings(
            root,
            ["storagenode", "run", "--config-dir", "{config_dir}"],
            # With [update] the node runs the installed release (first installed from the
            # control plane below), with these arguments.
            node={"config_dir": str(node.config_dir)},
            probe={"kind": "http", "url": f"{control}/pulse", "start_grace_seconds": 20.0},
            stop={"timeout_seconds": 10.0, "shutdown_url": f"{control}/shutdown"},
        )
        platform = this_platform()
        versions = [f"1.{i}.0" for i in range(args.updates + 1)]
        zips = {v: build_keeper("good", v, root / "releases") for v in versions}

        with ControlPlane(root / "cp") as cp:
            settings["update"] = {
                "server": cp.url,
                "interval_seconds": 1.0,
                "jitter": 0.1,
                "first_check": "now",
                "backoff_initial_seconds": 0.5,
                "backoff_max_seconds": 2.0,
                # The node's first install: a short probation, or the keeper's own first
                # update would wait a minute for it (one update at a time, decision 063).
                "probation_seconds": 1.0,
            }
            config = root / "keeper.toml"
            config.write_bytes(tomli_w.dumps(settings).encode())
            status_port = int(settings["status"]["listen"].rsplit(":", 1)[1])
            site = Site(
                root, config, Path(settings["data_dir"]), status_port, free_port(), root / "x"
            )
            install(zips[versions[0]], site.versions_dir)  # what the installer put there
            site.set_state(State(current=versions[0]))
            admin = AdminClient(cp.url, TOKEN)
            admin.publish("nodekeeper", versions[0], {platform: str(zips[versions[0]])})
            node_zip = build_artifact("1.0.0", root / "node-releases")
            admin.publish("storagenode", "1.0.0", {platform: str(node_zip)})  # the minimum

            launcher = LauncherProcess(site, probation=PROBATION)
            try:
                launcher.wait_running(versions[0], timeout=60)
                wait_for(lambda: node_serves(node.port), 60, "the node installed and serving")
                node_gaps = Gaps(lambda: node_serves(node.port))
                keeper_gaps = Gaps(lambda: status_answers("127.0.0.1", status_port, 0.5))
                node_pids = set()
                rows = []
                for old, new in itertools.pairwise(versions):
                    node_gaps.mark()
                    keeper_gaps.mark()
                    node_pids.add(_node_pid(node.port))
                    admin.publish("nodekeeper", new, {platform: str(zips[new])})
                    cp.cli("minimum", "set", "nodekeeper", new)
                    began = time.monotonic()
                    wait_for(
                        lambda new=new: site.state().current == new,
                        60 + 3 * PROBATION,
                        lambda new=new: f"the commit of {new}\n{launcher.log}",
                    )
                    took = time.monotonic() - began
                    time.sleep(0.5)  # the node's answers after the commit close the window
                    rows.append((old, new, node_gaps.longest(), keeper_gaps.longest(), took))
                node_pids.add(_node_pid(node.port))
                node_gaps.stop()
                keeper_gaps.stop()
            finally:
                launcher.stop()

    baseline_total = own_stop + cold_start
    print(
        f"node alone (median of {args.baseline_rounds}): graceful stop {own_stop * 1000:.0f} ms"
        f" + cold start {cold_start * 1000:.0f} ms = {baseline_total * 1000:.0f} ms"
    )
    print("keeper self-updates (check -> download -> verify -> preflight -> hand-over -> commit):")
    for old, new, node_gap, keeper_gap, took in rows:
        print(
            f"  {old} -> {new}: node unreachable {node_gap * 1000:.0f} ms "
            f"({node_gap / baseline_total:.2f} x stop+start); keeper status API down "
            f"{keeper_gap * 1000:.0f} ms; minimum set to commit {took:.1f} s"
        )
    median_gap = statistics.median(r[2] for r in rows)
    print(
        f"longest node gap of all: {max(r[2] for r in rows) * 1000:.0f} ms; keeper status API "
        f"down median {statistics.median(r[3] for r in rows) * 1000:.0f} ms (its hand-over)"
    )
    ratio = median_gap / baseline_total
    print(
        f"median node gap {median_gap * 1000:.0f} ms = {ratio:.2f} x the node's own stop+start "
        f"(target <= 0.10): {'MET' if ratio <= 0.10 else 'NOT MET'}"
    )
    print(
        f"node processes seen across the updates: {len(node_pids - {None})} (1 = never restarted)"
    )
    return 0


def _node_pid(port: int) -> int | None:
    """The pid listening on the node's public port (None between two nodes)."""
    for conn in psutil.net_connections("tcp"):
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN:
            return conn.pid
    return None


if __name__ == "__main__":
    sys.exit(main())
