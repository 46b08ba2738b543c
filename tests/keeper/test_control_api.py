"""The keeper's actions (decision 069) against a real keeper process running the reference
node: the token, restart, the node's settings and setup, and THE authorization test: an
ordinary user's process cannot read the token, is refused when it guesses, and the node
keeps running; root, with the token, restarts it."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import tomllib
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from nodekeeper.keeper.client import (
    NEEDS_ADMIN,
    KeeperClient,
    NotAuthorized,
    Rejected,
    read_token,
)
from nodekeeper.keeper.config import load_config
from tests.keeper.conftest import fast_settings, free_port
from tests.keeper.test_keeper_process import Keeper, wait_status, write_config

pytestmark = [pytest.mark.timeout(180), pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
WALLET = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
NOBODY = 65534


@dataclass
class Stack:
    root: Path
    config: Path
    node_dir: Path
    status_port: int
    keeper: Keeper

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.status_port}"

    @property
    def token_path(self) -> Path:
        return self.root / "data" / "state" / "control.token"

    def client(self) -> KeeperClient:
        return KeeperClient.from_config(load_config(self.config))

    def status(self) -> dict[str, Any]:
        return wait_status(self.status_port, lambda d: True)

    def running(self, other_than: int | None = None, timeout: float = 60) -> dict[str, Any]:
        return wait_status(
            self.status_port,
            lambda d: d["state"] == "running" and d["pid"] not in (None, other_than),
            timeout,
        )

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
        request = urllib.request.Request(self.url + path, body, headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                return r.status, json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                return exc.code, json.loads(raw)
            except ValueError:
                return exc.code, {"text": raw.decode()}


def _setup_node(config_dir: Path, storage: Path, control: int) -> None:
    subprocess.run(
        [
            str(Path(sys.executable).parent / "storagenode"), "setup",
            "--config-dir", str(config_dir), "--storage-dir", str(storage),
            "--allocated", "10 MB", "--listen", f"127.0.0.1:{free_port()}",
            "--control-listen", f"127.0.0.1:{control}",
            "--wallet", WALLET, "--email", "op@example.com",
            "--external-address", "node.example.com:28967",
        ],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip


def _start(root: Path, *, set_up: bool = True, **sections: Any) -> Stack:
    control = free_port()
    node_dir = root / "node"
    if set_up:
        _setup_node(node_dir, root / "pieces", control)
    else:
        node_dir.mkdir()
    settings = fast_settings(
        root,
        ["storagenode", "run", "--config-dir", "{config_dir}"],
        node={"config_dir": str(node_dir), **sections.pop("node", {})},
        probe={
            "kind": "http",
            "url": f"http://127.0.0.1:{control}/pulse",
            "start_grace_seconds": 20.0,
        },
        stop={"timeout_seconds": 10.0, "shutdown_url": f"http://127.0.0.1:{control}/shutdown"},
        **sections,
    )
    config = write_config(root / "keeper.toml", settings)
    port = int(settings["status"]["listen"].rsplit(":", 1)[1])
    return Stack(root, config, node_dir, port, Keeper(config))


@pytest.fixture
def world_readable_root() -> Iterator[Path]:
    """A directory an unprivileged user can walk (pytest's tmp dirs are root-only),
    so that only the token's own mode keeps that user out."""
    root = Path(tempfile.mkdtemp(prefix="nodekeeper-control-", dir="/tmp"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def stack(world_readable_root: Path) -> Iterator[Stack]:
    s = _start(world_readable_root)
    try:
        yield s
    finally:
        s.keeper.kill()


def as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
    """``python3 ARGS`` as the unprivileged user ``nobody`` (uid 65534, no groups): the
    system's Python (the venv's interpreter lives under /root, which nobody cannot
    enter) with this tree and the venv's packages on its path."""
    site = next(p for p in sys.path if p.endswith("site-packages") and ".venv" in p)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": "/nonexistent",
        "PYTHONPATH": f"{ROOT / 'src'}:{site}",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    return subprocess.run(
        ["runuser", "-u", "nobody", "--", "/usr/bin/env", *(f"{k}={v}" for k, v in env.items()),
         "/usr/bin/python3", *args],
        capture_output=True, text=True, timeout=60, check=False, cwd="/",
    )  # fmt: skip


def node_started_at(pid: int) -> float:
    import psutil

    return psutil.Process(pid).create_time()


def test_an_ordinary_user_cannot_restart_the_node_and_root_can(stack: Stack) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: it runs the client as the unprivileged user nobody")
    if not shutil.which("runuser") or not Path("/usr/bin/python3").exists():
        pytest.skip("needs runuser and /usr/bin/python3 to run a process as nobody")
    first = stack.running()
    pid, born = first["pid"], node_started_at(first["pid"])
    mode = stat.S_IMODE(stack.token_path.stat().st_mode)
    assert mode == 0o600 and stack.token_path.stat().st_uid == 0

    # The CLI, as nobody: it cannot read the token and says what it needs.
    cli = as_nobody("-m", "nodekeeper", "node", "restart", "--config", str(stack.config))
    assert cli.returncode == 1, cli.stdout + cli.stderr
    assert cli.stderr.strip().splitlines() == [f"nodekeeper: error: {NEEDS_ADMIN}"]

    # The client, as nobody: no token to read; guesses and no token at all are 401.
    probe = f"""
import json, urllib.request
from pathlib import Path
from nodekeeper.keeper.client import KeeperClient, NotAuthorized, read_token
seen = {{"read_token": read_token(Path({str(stack.token_path)!r}))}}
try:
    Path({str(stack.token_path)!r}).read_text()
    seen["open"] = "read it"
except PermissionError:
    seen["open"] = "PermissionError"
for guess in ("x" * 43, None):
    try:
        KeeperClient({stack.url!r}, guess).restart()
        seen[str(guess)] = "restarted"
    except NotAuthorized as exc:
        seen[str(guess)] = str(exc)
req = urllib.request.Request({stack.url + "/node/restart"!r}, b"{{}}", method="POST",
                             headers={{"Authorization": "Bearer " + "y" * 43}})
try:
    urllib.request.urlopen(req, timeout=30)
    seen["raw"] = 200
except urllib.error.HTTPError as exc:
    seen["raw"] = exc.code
seen["status"] = KeeperClient({stack.url!r}).status()["pid"]
print(json.dumps(seen))
"""
    done = as_nobody("-c", probe)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["read_token"] is None and seen["open"] == "PermissionError"
    assert "refused the control token" in seen["x" * 43]
    assert seen["None"] == NEEDS_ADMIN
    assert seen["raw"] == 401
    assert seen["status"] == pid  # reading needs no token

    # Nothing happened to the node.
    now = stack.status()
    assert now["pid"] == pid and now["restarts"] == first["restarts"]
    assert node_started_at(pid) == born

    # Root reads the token and restarts it: a new process.
    as_root = subprocess.run(
        [sys.executable, "-m", "nodekeeper", "node", "restart", "--config", str(stack.config)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert as_root.returncode == 0, as_root.stderr
    assert as_root.stdout.strip() == "the node was restarted"
    after = stack.running(other_than=pid)
    assert after["pid"] != pid


def test_bodies_are_bounded_and_checked_before_anything_changes(stack: Stack) -> None:
    stack.running()
    token = read_token(stack.token_path)
    assert token
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    config_before = (stack.node_dir / "config.toml").read_bytes()

    assert stack.post("/settings", b"{not json", auth)[0] == 400
    code, said = stack.post("/settings", b"{not json", auth)
    assert "not JSON" in said["error"]
    code, said = stack.post("/settings", b"[1, 2]", auth)
    assert code == 400 and "JSON object" in said["error"]
    code, said = stack.post("/settings", b" " * (64 * 1024 + 1), auth)
    assert code == 413 and "at most 65536 bytes" in said["text"]
    # The token is checked first: a bad body without it is a 401, not a 400.
    assert stack.post("/settings", b"{not json", {})[0] == 401
    assert stack.post("/settings", b"{}", {"Authorization": "Basic x"})[0] == 401

    client = stack.client()
    with pytest.raises(Rejected) as refused:
        client.apply_settings({"wallet": WALLET[:-1] + "x", "email": "no-at-sign", "colour": "red"})
    assert set(refused.value.errors) == {"wallet", "email", "colour"}
    assert "hex digits" in refused.value.errors["wallet"]
    with pytest.raises(Rejected) as moved:
        client.apply_settings({"storage_dir": str(stack.root / "empty")})
    assert "does not hold this node's pieces" in moved.value.errors["storage_dir"]
    with pytest.raises(Rejected) as big:
        client.apply_settings({"allocation": "1 PB"})
    assert "does not fit" in big.value.errors["allocation"]
    assert (stack.node_dir / "config.toml").read_bytes() == config_before


def test_settings_are_read_changed_atomically_and_the_node_restarted(stack: Stack) -> None:
    pid = stack.running()["pid"]
    client = stack.client()
    read = client.settings()
    assert read == {
        "needs_setup": False,
        "values": {
            "wallet": WALLET,
            "email": "op@example.com",
            "external_address": "node.example.com:28967",
            "storage_dir": str(stack.root / "pieces"),
            "allocation": "10 MB",
        },
    }
    unchanged = client.apply_settings({"email": "op@example.com"})
    assert unchanged == {"applied": [], "restarted": False}
    assert stack.status()["pid"] == pid

    # The pieces moved by the operator: the new folder holds this node's verification file.
    shutil.copytree(stack.root / "pieces", stack.root / "moved")
    changed = client.apply_settings(
        {
            "email": "new@example.org",
            "allocation": "20 MB",
            "storage_dir": str(stack.root / "moved"),
        }
    )
    assert changed == {"applied": ["email", "storage_dir", "allocation"], "restarted": True}
    document = tomllib.loads((stack.node_dir / "config.toml").read_text())
    assert document["operator"]["email"] == "new@example.org"
    assert document["operator"]["wallet"] == WALLET  # untouched fields stay
    assert document["allocated_bytes"] == 20_000_000
    assert document["storage_dir"] == str(stack.root / "moved")
    after = stack.running(other_than=pid)
    assert after["last_pulse"]["data"]["allocated_bytes"] == 20_000_000
    assert client.settings()["values"]["email"] == "new@example.org"


def test_a_node_in_needs_setup_is_set_up_and_started_at_once(world_readable_root: Path) -> None:
    # The recheck is an hour away: only the keeper's own switch can start the node soon.
    s = _start(world_readable_root, set_up=False, node={"setup_recheck_seconds": 3600.0})
    try:
        wait_status(s.status_port, lambda d: d["state"] == "needs-setup", 60)
        client = s.client()
        assert client.settings() == {
            "needs_setup": True,
            "values": dict.fromkeys(
                ("wallet", "email", "external_address", "storage_dir", "allocation")
            ),
        }
        with pytest.raises(Rejected) as refused:
            client.set_up({"wallet": "0x12", "email": "a@b", "storage_dir": str(s.root / "p")})
        assert set(refused.value.errors) == {"wallet", "email", "external_address", "allocation"}
        assert not (s.node_dir / "config.toml").exists()
        port = free_port()
        answer = client.set_up(
            {
                "wallet": WALLET,
                "email": "op@example.com",
                "external_address": f"127.0.0.1:{port}",
                "storage_dir": str(s.root / "pieces"),
                "allocation": "10 MB",
            }
        )
        assert answer == {"set_up": True}
        running = s.running(timeout=60)
        assert running["last_pulse"]["data"]["node_id"]
        assert client.settings()["values"]["external_address"] == f"127.0.0.1:{port}"
        with pytest.raises(Exception, match="set up already"):
            client.set_up({})
        # The public listener is where setup put it (0.0.0.0:<port of the address>).
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
    finally:
        s.keeper.kill()


def test_without_update_table_maintenance_is_null_and_pause_says_why(stack: Stack) -> None:
    data = stack.running()
    assert data["maintenance"] is None and data["dashboard_url"] is None
    with pytest.raises(Exception, match=r"no \[update\] table"):
        stack.client().pause_updates(None)
    with pytest.raises(NotAuthorized):
        KeeperClient(stack.url, "z" * 43).set_quiet_window("18:00-23:00")
