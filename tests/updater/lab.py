"""A real update lab: control plane, reference node, keeper process, published artifacts.

Nothing is mocked: the control plane is `nodekeeper server run`, releases are published
with ``AdminClient`` from zips built by ``tests/artifacts.py``, the node is the reference
storage node set up with `storagenode setup`, and the keeper is `python -m
nodekeeper.keeper` with an ``[update]`` table. Timing constants are small (probation
0.5 s, checks every 1 s) so one update takes a few seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import tomli_w

from nodekeeper.server.client import AdminClient
from nodekeeper.version.platforms import this_platform
from storagenode.release import build_artifact
from tests.artifacts import build_faulty, build_good
from tests.nodes import NodeSetup, setup_node
from tests.server.controlplane import TOKEN, ControlPlane
from tests.support import deep_merge, free_port

from .inprocess import PROCESS, Releases

KEEPER = [sys.executable, "-m", "nodekeeper.keeper"]


class KeeperProcess:
    def __init__(self, config: Path, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.log_path = log_path
        # faulthandler: a keeper that does not stop in time is made to print every
        # thread's stack (SIGABRT) into its log, for the failure message.
        full_env = dict(os.environ, PYTHONFAULTHANDLER="1")
        full_env.update(env or {})
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [*KEEPER, "--config", str(config)],
                stdout=log,
                stderr=log,
                env=full_env,
            )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGABRT)
            self.proc.wait(10)
            log = self.log_path.read_text(errors="replace")[-12000:]
            raise AssertionError(
                f"the keeper did not stop within {timeout:g} s of SIGTERM; its log, "
                f"with every thread's stack at the timeout:\n{log}"
            ) from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def keeper_settings(
    data_dir: Path, node: NodeSetup, status_port: int, server_url: str
) -> dict[str, Any]:
    """The lab's keeper.toml for one node: small timings so that an update takes a few
    seconds (shared by `Lab` and the fleet of test_auto_pause_fleet.py)."""
    return {
        "data_dir": str(data_dir),
        "node": {"config_dir": str(node.config_dir), "setup_recheck_seconds": 0.5},
        "probe": {
            "kind": "http",
            "url": f"{node.control_url}/pulse",
            "interval_seconds": 0.2,
            "timeout_seconds": 0.5,
            "failure_threshold": 3,
            "start_grace_seconds": 20.0,
        },
        "restart": {
            "backoff_initial_seconds": 0.2,
            "backoff_max_seconds": 1.0,
            "backoff_reset_after_seconds": 5.0,
        },
        "stop": {"timeout_seconds": 5.0, "shutdown_url": f"{node.control_url}/shutdown"},
        "limits": {"sample_interval_seconds": 1.0},
        "status": {"listen": f"127.0.0.1:{status_port}"},
        "update": {
            "server": server_url,
            "interval_seconds": 1.0,
            "jitter": 0.1,
            "first_check": "now",
            "backoff_initial_seconds": 0.5,
            "backoff_max_seconds": 2.0,
            "probation_seconds": 0.5,
            "probation_start_timeout_seconds": 20.0,
            "connect_timeout_seconds": 2.0,
            "read_timeout_seconds": 2.0,
        },
    }


class Lab(Releases):
    """The end-to-end update stack of one node; publishing and rolling out are
    `Releases`' (shared with the in-process rig)."""

    def __init__(
        self,
        root: Path,
        *,
        allocated: str = "50 MB",
        storage_root: Path | None = None,
        setup: NodeSetup | None = None,
    ) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.platform = this_platform()
        self.cp = ControlPlane(root / "cp").start()
        self.admin = AdminClient(self.cp.url, TOKEN)
        # ``setup`` given: the node's dirs and ports, not set up (the keeper sees exit 78).
        self.node: NodeSetup = setup or setup_node(storage_root or (root / "node"), allocated)
        self.data_dir = root / "keeper"
        self.status_port = free_port()
        self.keepers: list[KeeperProcess] = []
        self.log_path = root / "keeper.log"
        self.pieces: dict[str, bytes] = {}
        self.settings: dict[str, Any] = {}

    # -- releases ------------------------------------------------------------------------

    def artifact(self, version: str, kind: str = "good", **options: Any) -> Path:
        """Built for this lab; ``padding=N`` makes a good release N bytes bigger."""
        padding = options.pop("padding", 0)
        if padding:
            return self.padded_artifact(version, padding)
        out = self.root / "artifacts" / f"{version}-{kind}"
        if kind == "good":
            return build_good(version, out, extra_migration=options.get("extra_migration", 0))
        return build_faulty(kind, version, out, **options)

    def padded_artifact(self, version: str, padding: int) -> Path:
        """A good release with ``padding`` random bytes in it, so that downloading and
        unpacking it take long enough to be interrupted half-way."""
        out = self.root / "artifacts" / f"{version}-padded"
        return build_artifact(version, out, extra_files={"padding.bin": os.urandom(padding)})

    # -- keeper --------------------------------------------------------------------------

    def config(self, **sections: Any) -> Path:
        base = keeper_settings(self.data_dir, self.node, self.status_port, self.cp.url)
        self.settings = deep_merge(base, sections)
        path = self.root / "keeper.toml"
        path.write_bytes(tomli_w.dumps(self.settings).encode())
        return path

    def start_keeper(self, env: dict[str, str] | None = None, **sections: Any) -> KeeperProcess:
        if sections or not self.settings:
            config = self.config(**sections)
        else:
            config = self.root / "keeper.toml"
        keeper = KeeperProcess(config, self.log_path, env)
        self.keepers.append(keeper)
        return keeper

    def status(self) -> dict[str, Any] | None:
        try:
            url = f"http://127.0.0.1:{self.status_port}/status"
            with urllib.request.urlopen(url, timeout=2) as r:
                return json.loads(r.read())
        except OSError:
            return None

    def wait(self, check: Callable[[], Any], timeout: float = 30, what: str = "") -> Any:
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            result = check()
            if result:
                return result
            time.sleep(0.05)
        raise AssertionError(
            f"timed out after {timeout} s waiting for {what or check}; status: "
            f"{json.dumps(self.status(), indent=1)[:3000]}\nkeeper log tail:\n{self.log_tail()}"
        )

    def wait_running(self, version: str, timeout: float = 30, committed: bool = True) -> dict:
        """The node answers its pulse as ``version`` and (by default) the journal has it
        committed with no step in flight."""

        def check() -> dict | None:
            st = self.status()
            if not st or st["state"] != "running" or st.get("version") != version:
                return None
            pulse = self.pulse()
            if not pulse or pulse.get("version") != version:
                return None
            if committed:
                journal = self.journal()
                if not journal or journal["current"] != version or journal["inflight"]:
                    return None
            return st

        return self.wait(check, timeout, f"node running {version}")

    def journal(self) -> dict[str, Any] | None:
        path = self.data_dir / "state" / "update.json"
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def pulse(self) -> dict[str, Any] | None:
        try:
            r = httpx.get(f"{self.node.control_url}/pulse", timeout=1)
            return r.json() if r.status_code == 200 else None
        except httpx.HTTPError:
            return None

    def error_index(self) -> list[dict[str, Any]]:
        """The error index the tray app reads (one JSON object per line; these tests
        never write enough to rotate it)."""
        try:
            text = (self.data_dir / "logs" / "errors.jsonl").read_text()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def entries(self, reason: str) -> list[dict[str, Any]]:
        return [e for e in self.error_index() if e.get("reason") == reason]

    def reasons(self) -> list[str]:
        return [str(e.get("reason")) for e in self.error_index()]

    def reports(self) -> list[dict[str, Any]]:
        return self.admin.request("GET", "/v1/admin/reports")

    def report_kinds(self) -> list[str]:
        return [r["kind"] for r in self.reports()]

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def node_pid(self) -> int | None:
        st = self.status()
        return st["pid"] if st else None

    def check_running_is_verified(self, version: str, zip_path: Path) -> None:
        """The running node's command names the complete install of ``version``, and
        every file of that install is byte for byte the published zip's."""
        pid = self.node_pid()
        assert pid is not None
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        install = self.data_dir / "versions" / PROCESS / version
        assert str(install).encode() in cmdline, cmdline
        assert not any(b".tmp-" in part or b".part" in part for part in cmdline)
        with zipfile.ZipFile(zip_path) as zf:
            names = {n for n in zf.namelist() if not n.endswith("/")}
            on_disk = {
                p.relative_to(install).as_posix()
                for p in install.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts  # written by the node itself
            }
            assert on_disk == names
            for name in names:
                assert (install / name).read_bytes() == zf.read(name), name

    # -- pieces --------------------------------------------------------------------------

    def put_piece(self, piece_id: str, data: bytes) -> None:
        r = httpx.put(
            f"{self.node.url}/pieces/{piece_id}",
            content=data,
            headers={"X-Content-SHA256": hashlib.sha256(data).hexdigest()},
            timeout=10,
        )
        assert r.status_code == 201, r.text
        self.pieces[piece_id] = data

    def check_pieces(self) -> None:
        for piece_id, data in self.pieces.items():
            r = httpx.get(f"{self.node.url}/pieces/{piece_id}", timeout=10)
            assert r.status_code == 200, f"piece {piece_id}: HTTP {r.status_code}"
            assert r.content == data, f"piece {piece_id} changed"

    # -- teardown ------------------------------------------------------------------------

    def close(self) -> None:
        for keeper in self.keepers:
            try:
                keeper.stop(20)
            except subprocess.TimeoutExpired:
                keeper.kill()
        self.admin.close()
        self.cp.stop()
