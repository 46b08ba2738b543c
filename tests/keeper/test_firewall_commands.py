"""`nodekeeper firewall check` and `nodekeeper firewall allow` on Linux, through the real
CLI: this machine's tools, real rules in a private network namespace, and what is refused
with nothing changed. (Windows: tests/windows/test_firewall_wine.py.)"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nodekeeper.firewall.decision import decide
from nodekeeper.firewall.target import Target
from nodekeeper.keeper.firewall_commands import render_verdict
from tests.firewall.recorded import NODE, PORT, windows
from tests.support import run_main

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux CLI")


def _keeper_toml(tmp_path: Path, listen: str | None = ":28967", extra: str = "") -> Path:
    node = tmp_path / "node"
    node.mkdir(exist_ok=True)
    if listen is not None:
        (node / "config.toml").write_text(f'config_format = 1\nlisten = "{listen}"\n')
    path = tmp_path / "keeper.toml"
    path.write_text(
        f'data_dir = "{tmp_path / "data"}"\n{extra}\n[node]\nconfig_dir = "{node}"\n'
        'command = ["/usr/bin/storagenode"]\n'
    )
    return path


def test_check_a_loopback_node_is_unknown_exit_3(tmp_path: Path) -> None:
    done = run_main(["firewall", "check", "--config", str(_keeper_toml(tmp_path, "127.0.0.1:1"))])
    assert done.returncode == 3, done
    assert "TCP  unknown  the node listens on 127.0.0.1 only" in done.stdout


def test_check_on_this_machine_says_and_exits_alike(tmp_path: Path) -> None:
    done = run_main(["firewall", "check", "--json", "--config", str(_keeper_toml(tmp_path))])
    data = json.loads(done.stdout)
    status = data["verdict"]["status"]
    assert done.returncode == {"allowed": 0, "blocked": 1, "unknown": 3}[status]
    assert data["target"]["port"] == 28967
    assert data["target"]["program"] == "/usr/bin/storagenode"
    found = [
        t
        for t in ("nft", "iptables", "ufw")
        if shutil.which(t, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    ]
    if found:
        assert data["observation"]["kind"] == "linux"


def test_check_refuses_a_bad_timeout_and_a_bad_config(tmp_path: Path) -> None:
    done = run_main(
        ["firewall", "check", "--timeout", "0", "--config", str(_keeper_toml(tmp_path))]
    )
    assert (done.returncode, done.stderr) == (
        2,
        "nodekeeper: error: --timeout must be more than 0 seconds (got 0)\n",
    )
    bad = tmp_path / "bad.toml"
    bad.write_text("[firewall]\nport = 70000\n")
    done = run_main(["firewall", "check", "--config", str(bad)])
    assert done.returncode == 2
    assert "firewall.port: Input should be less than or equal to 65535" in done.stderr


def test_allow_without_a_port_changes_nothing(tmp_path: Path) -> None:
    done = run_main(["firewall", "allow", "--config", str(_keeper_toml(tmp_path, None))])
    assert done.returncode == 2
    assert done.stderr.startswith(
        "nodekeeper: error: nothing was changed: the node's port is unknown"
    )


CHILD = r"""
import subprocess, sys
subprocess.run(["nft", "-f", "-"], check=True, input=b'''
table inet home {
  chain input {
    type filter hook input priority 0; policy drop;
    iifname "lo" accept
    ct state established,related accept
    tcp dport 22 accept
  }
}
''')
for args in (["check"], ["allow"]):
    argv = [sys.executable, "-m", "nodekeeper", "firewall", *args, "--config", sys.argv[1]]
    done = subprocess.run(argv, capture_output=True, text=True)
    print(f"--- {args[0]} exit {done.returncode}")
    print(done.stdout, end="")
"""


def test_check_and_allow_with_real_rules(tmp_path: Path) -> None:
    if os.geteuid() != 0 or not shutil.which("nft"):
        pytest.skip("needs root and nft for a private network namespace")
    if subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode != 0:
        pytest.skip("cannot make a network namespace here")
    config = _keeper_toml(tmp_path)
    done = subprocess.run(
        ["unshare", "--net", sys.executable, "-c", CHILD, str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert done.returncode == 0, done.stderr
    check, allow = done.stdout.split("--- allow ")
    assert check.startswith("--- check exit 1\n")
    assert "TCP  blocked  nftables: the policy drop of inet home input drops inbound TCP" in check
    assert (
        "fix, as root (sudo):\n  nft insert rule inet home input tcp dport 28967 accept\n" in check
    )
    assert allow.splitlines()[:4] == [
        "exit 0",
        "to open port 28967, run as root (sudo):",
        "  nft insert rule inet home input tcp dport 28967 accept",
        "  nft insert rule inet home input udp dport 28967 accept",
    ]


def test_the_windows_rendering_points_at_allow() -> None:
    target = Target(
        PORT,
        NODE,
        "listen in C:\\ProgramData\\nodekeeper\\storagenode\\config.toml",
        host="0.0.0.0",
    )
    verdict = decide(target, windows("home-rules-for-old-version"), 0.0)
    text = render_verdict(verdict, target, "nodekeeper firewall allow --config C:\\k.toml")
    lines = text.splitlines()
    assert lines[:3] == [
        "port      28967 (listen in C:\\ProgramData\\nodekeeper\\storagenode\\config.toml)",
        f"program   {NODE}",
        "firewall  Windows Firewall",
    ]
    assert "fix, from an elevated prompt (Run as administrator):" in lines
    at = lines.index("fix, from an elevated prompt (Run as administrator):")
    assert lines[at + 1 : at + 3] == [
        "  nodekeeper firewall allow --config C:\\k.toml",
        "which runs:",
    ]
    assert lines[at + 3].startswith('  netsh advfirewall firewall delete rule name="nodekeeper')
    # Commands are never wrapped; reasons are.
    assert all(len(line) <= 80 for line in lines if not line.startswith("  "))
