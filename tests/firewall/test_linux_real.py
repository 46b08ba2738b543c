"""The Linux probe against this machine's real tools, and against real rules in a
private network namespace (root only: the machine's own firewall is never touched)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nodekeeper.firewall import linux_probe
from nodekeeper.firewall.decision import decide
from nodekeeper.firewall.observations import NFT
from nodekeeper.firewall.target import Target

ROOT = Path(__file__).resolve().parents[2]
TARGET = Target(28967, None, "test", host="0.0.0.0")
TOOLS = ("nft", "iptables", "ufw", "firewall-cmd")

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")


def test_this_machines_tools() -> None:
    """Whatever is installed runs and gives a well-formed verdict (what it says depends
    on the machine; as root with the tools there, it is never "needs root")."""
    found = [t for t in TOOLS if linux_probe.find_tool(t)]
    if not found:
        pytest.skip("none of nft, iptables, ufw, firewall-cmd is installed")
    obs = linux_probe.observe(20.0)
    assert set(obs.runs) <= set(linux_probe.COMMANDS)
    assert all(run.error is None for run in obs.runs.values()), obs.runs
    verdict = decide(TARGET, obs, 0.0)
    assert verdict.status in ("allowed", "blocked", "unknown")
    for p in verdict.protocols:
        assert p.reason and (p.status != "blocked" or p.fix)
        if os.geteuid() == 0:
            assert "needs root" not in p.reason
    print(verdict.summary(), [p.reason for p in verdict.protocols])


# Run in a new network namespace: load the rules, check, run the printed fix, check again.
CHILD = r"""
import json, shlex, subprocess, sys
from nodekeeper.firewall.check import run_check
from nodekeeper.firewall.target import Target
subprocess.run(sys.argv[1:], input=sys.stdin.buffer.read(), check=True)
target = Target(28967, None, "test", host="0.0.0.0")
before = run_check(target, timeout=20)
for command in before.fix():
    subprocess.run(shlex.split(command), check=True)
after = run_check(target, timeout=20)
print(json.dumps({"before": before.as_dict(), "after": after.as_dict()}))
"""


def _in_namespace(loader: list[str], rules: str) -> dict[str, dict[str, object]]:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare for a private network namespace")
    if subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode != 0:
        pytest.skip("cannot make a network namespace here")
    if shutil.which(loader[0]) is None:
        pytest.skip(f"{loader[0]} is not installed")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        ["unshare", "--net", sys.executable, "-c", CHILD, *loader],
        input=rules.encode(),
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout.decode().splitlines()[-1])


def test_real_nft_rules_and_their_fix() -> None:
    rules = """
    table inet home {
      chain input {
        type filter hook input priority 0; policy drop;
        iifname "lo" accept
        ct state established,related accept
        tcp dport { 22, 28967 } accept
      }
    }
    """
    got = _in_namespace(["nft", "-f", "-"], rules)
    before, after = got["before"], got["after"]
    assert before["summary"].startswith("TCP allowed, UDP blocked")
    assert before["fix"] == ["nft insert rule inet home input udp dport 28967 accept"]
    assert after["status"] == "allowed", after


def test_real_iptables_rules_and_their_fix() -> None:
    rules = "*filter\n:INPUT DROP [0:0]\n-A INPUT -i lo -j ACCEPT\nCOMMIT\n"
    got = _in_namespace(["iptables-restore"], rules)
    before, after = got["before"], got["after"]
    assert before["status"] == "blocked"
    assert before["fix"] == [
        "iptables -I INPUT -p tcp --dport 28967 -j ACCEPT",
        "iptables -I INPUT -p udp --dport 28967 -j ACCEPT",
    ]
    assert after["status"] == "allowed", after


def test_a_tool_that_hangs_is_killed_at_the_deadline(tmp_path: Path) -> None:
    """A stand-in nft that never answers: the probe returns at its deadline."""
    fake = tmp_path / "nft"
    fake.write_text("#!/bin/sh\nexec sleep 60\n")
    fake.chmod(0o755)
    obs = linux_probe.observe(0.5, find=lambda name: str(fake) if name == "nft" else None)
    assert obs.runs[NFT].error == "`nft -j list ruleset` did not finish within 0.5 s"
    assert decide(TARGET, obs, 0.0).status == "unknown"
