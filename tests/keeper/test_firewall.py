"""The keeper's firewall check (keeper/firewall_watch.py) and its status: when an entry
goes to the error index (pure, on recorded verdicts), the status row and problem line,
and the watch itself with the real check: at start, again when the node's port changes,
never waiting on a hung firewall tool, and in a whole keeper's status API."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from nodekeeper.firewall.decision import decide
from nodekeeper.firewall.target import Target
from nodekeeper.firewall.verdict import Verdict
from nodekeeper.keeper.config import KeeperConfig
from nodekeeper.keeper.firewall_watch import (
    FirewallWatch,
    blocked_message,
    firewall_target,
    index_update,
)
from nodekeeper.keeper.status_view import firewall_row, render_status, status_problems
from nodekeeper.keeper.supervisor import Supervisor
from nodekeeper.keeper.wiring import Keeper
from nodekeeper.platform import current_platform
from tests.firewall.recorded import NODE, PORT, linux, windows
from tests.keeper.conftest import ListErrors, ListSink, fast_settings, wait_until

ROOT = Path(__file__).resolve().parents[2]
WIN = Target(PORT, NODE, "listen in config.toml", host="0.0.0.0")


def _windows(name: str) -> Verdict:
    return decide(WIN, windows(name), 1_796_000_000.0)


def _settings(tmp_path: Path, listen: str | None = ":28967", **firewall: Any) -> dict[str, Any]:
    node = tmp_path / "node"
    node.mkdir(exist_ok=True)
    if listen is not None:
        (node / "config.toml").write_text(f'config_format = 1\nlisten = "{listen}"\n')
    settings = fast_settings(tmp_path, ["/bin/true"], firewall=firewall)
    settings["node"]["config_dir"] = str(node)
    return settings


def _config(tmp_path: Path, listen: str | None = ":28967", **firewall: Any) -> KeeperConfig:
    return KeeperConfig.model_validate(_settings(tmp_path, listen, **firewall))


# -- the error index, once per change (pure) ----------------------------------------------


def test_a_blocked_port_is_an_entry_once_per_change() -> None:
    no_rule = _windows("home-public-no-rule")
    block_rule = _windows("home-declined-prompt-block-wins")
    allowed = _windows("home-own-rules")
    unknown = _windows("wine")
    recorded = None
    entries = []
    for verdict in (no_rule, no_rule, unknown, no_rule, block_rule, allowed, allowed, no_rule):
        recorded, new = index_update(recorded, verdict)
        entries.append(new)
    # The same blocked state an hour later, or after a look that failed, is not news; a
    # different fix is, and so is blocked again after the port was open.
    assert entries == [True, False, False, False, True, False, False, True]


def test_the_entry_says_what_why_and_the_fix() -> None:
    assert blocked_message(_windows("home-rules-for-old-version")) == (
        "the firewall blocks inbound TCP and UDP to the node's port 28967: no enabled inbound "
        "rule allows TCP 28967 for the node's program (C:\\ProgramData\\nodekeeper\\versions\\"
        "storagenode\\1.3.0\\storagenode.exe) in the public profile ('nodekeeper storagenode "
        "TCP 28967' is for another program (C:\\ProgramData\\nodekeeper\\versions\\"
        "storagenode\\1.2.0\\storagenode.exe)); fix: `nodekeeper firewall allow` (from an "
        "elevated prompt (Run as administrator))"
    )
    # A fix `allow` cannot do is given as the commands themselves.
    assert blocked_message(_windows("home-declined-prompt-block-wins")).endswith(
        "fix (from an elevated prompt (Run as administrator)): netsh advfirewall firewall "
        "set rule name=storagenode.exe dir=in new enable=no"
    )
    linux_blocked = decide(WIN, linux(nft="netns-nft", iptables="netns-iptables"), 0.0)
    assert blocked_message(linux_blocked).endswith(
        "fix (as root (sudo)): nft insert rule inet fwtest input udp dport 28967 accept"
    )


# -- the status view -----------------------------------------------------------------------


def _status(tmp_path: Path, firewall: dict[str, Any] | None) -> dict[str, Any]:
    sup = Supervisor(
        KeeperConfig.model_validate(fast_settings(tmp_path, ["true"])), current_platform()
    )
    data = json.loads(json.dumps(sup.snapshot()))
    if firewall is not None:
        data["firewall"] = firewall
    return data


def _part(verdict: Verdict | None) -> dict[str, Any]:
    return {
        "enabled": True,
        "checking": False,
        "interval_seconds": 3600.0,
        "next_check_in": 3500.0,
        "target": None,
        "last": json.loads(json.dumps(verdict.as_dict())) if verdict else None,
    }


def test_status_shows_a_blocked_port_as_a_problem_with_the_fix(tmp_path: Path) -> None:
    data = _status(tmp_path, _part(_windows("home-public-no-rule")))
    problems = status_problems(data, time.time())
    assert problems == [blocked_message(_windows("home-public-no-rule"))]
    text = render_status(data)
    assert text.startswith("PROBLEMS\n! the firewall blocks inbound TCP and UDP")
    assert "firewall        TCP blocked, UDP blocked (port 28967, Windows Firewall)" in text
    assert all(len(line) <= 80 for line in text.splitlines())


def test_status_rows_for_each_state(tmp_path: Path) -> None:
    assert firewall_row(None) is None  # a keeper from before the check
    assert firewall_row({"enabled": False}) == "not checked ([firewall] enabled = false)"
    assert firewall_row({**_part(None), "checking": True}) == "checking now"
    assert firewall_row(_part(_windows("home-own-rules"))) == (
        "TCP allowed, UDP allowed (port 28967, Windows Firewall)"
    )
    assert firewall_row(_part(_windows("wine"))) == (
        "TCP unknown, UDP unknown (port 28967, Windows Firewall): could not read the active "
        "firewall profiles: 0x80020009 DISP_E_EXCEPTION (0x80004001 E_NOTIMPL: not "
        "implemented)"
    )
    data = _status(tmp_path, _part(_windows("home-third-party")))
    assert status_problems(data, time.time()) == []  # unknown is not a problem line


# -- the watch, with the real check --------------------------------------------------------


def test_target_from_the_keeper_config(tmp_path: Path) -> None:
    config = _config(tmp_path, program="{data_dir}/node.exe")
    target = firewall_target(config, "/ignored")
    assert (target.port, target.program) == (28967, f"{config.data_path()}/node.exe")
    config = _config(tmp_path, port=7777)
    assert firewall_target(config, "/n").port_source == "firewall.port"


async def _run(watch: FirewallWatch) -> asyncio.Task[None]:
    return asyncio.create_task(watch.run())


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def test_checked_at_start_and_again_when_the_node_is_set_up(tmp_path: Path) -> None:
    """The node's port appears after start (set up later): no waiting for the hour."""
    config = _config(tmp_path, listen=None, interval_seconds=3600.0)
    errors = ListErrors()
    # Looked at for a change every min(interval, 60 s); here every 50 ms.
    watch = FirewallWatch(config, lambda: "/usr/bin/storagenode", errors, poll_seconds=0.05)

    async def scenario() -> None:
        task = await _run(watch)
        try:
            await wait_until(lambda: watch.last is not None, 30, "the first check")
            assert watch.last is not None and watch.last.status == "unknown"
            assert "not set up yet?" in watch.last.of("tcp").reason
            (tmp_path / "node" / "config.toml").write_text('config_format = 1\nlisten = ":7000"\n')
            await wait_until(
                lambda: watch.last is not None and watch.last.port == 7000,
                30,
                "a check of the new port",
            )
        finally:
            await _stop(task)

    asyncio.run(scenario())
    snapshot = watch.snapshot()
    assert snapshot["target"] == {
        "port": 7000,
        "port_source": f"listen in {tmp_path / 'node' / 'config.toml'}",
        "program": "/usr/bin/storagenode",
    }
    assert snapshot["last"]["port"] == 7000
    assert 3500 < snapshot["next_check_in"] <= 3600


@pytest.mark.skipif(sys.platform == "win32", reason="a POSIX stand-in for a firewall tool")
def test_a_hung_firewall_tool_never_holds_the_keeper(tmp_path: Path) -> None:
    """A stand-in `nft` that never answers: the keeper's stop does not wait for it, no
    second check starts beside it, and the check ends at its own deadline."""
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "nft").write_text("#!/bin/sh\nexec sleep 60\n")
    (tools / "nft").chmod(0o755)
    config = _config(tmp_path, timeout_seconds=5.0)
    watch = FirewallWatch(config, lambda: "/usr/bin/storagenode", ListErrors())

    async def scenario() -> None:
        task = await _run(watch)
        await wait_until(lambda: watch.snapshot()["checking"], 10, "a check in flight")
        began = time.monotonic()
        await _stop(task)
        assert time.monotonic() - began < 2.0  # the stop did not wait for the tool (2 s of it)
        second = await watch.check(watch.target())
        assert "the previous check has not finished" in second.of("tcp").reason
        # The hung check ends at its own deadline (the tool is killed): nothing is left.
        await wait_until(lambda: not watch.snapshot()["checking"], 15, "the check's deadline")

    path = os.pathsep.join([str(tools), os.environ.get("PATH", "")])
    from tests.support import environ

    with environ({"PATH": path}):
        asyncio.run(scenario())


def test_the_keeper_serves_the_verdict(tmp_path: Path) -> None:
    config = _config(tmp_path, listen="127.0.0.1:28967")
    keeper = Keeper.build(config, current_platform(), sink=ListSink(), errors=ListErrors())
    assert keeper.firewall is not None

    async def scenario() -> dict[str, Any]:
        from nodekeeper.keeper import loopback

        serving = asyncio.create_task(keeper.serve())
        host, port = config.status_host_port()
        try:
            await wait_until(
                lambda: keeper.firewall is not None and keeper.firewall.last is not None, 30
            )
            response = await loopback.request("GET", f"http://{host}:{port}/status", timeout=5)
            return json.loads(response.body)
        finally:
            keeper.supervisor.request_shutdown()
            await asyncio.wait_for(serving, 30)

    data = asyncio.run(scenario())
    last = data["firewall"]["last"]
    assert last["status"] == "unknown"
    assert last["protocols"]["tcp"]["reason"].startswith("the node listens on 127.0.0.1 only")
    assert "firewall        TCP unknown, UDP unknown (port 28967): the node listens" in (
        render_status(data)
    )


def test_the_check_can_be_switched_off(tmp_path: Path) -> None:
    config = _config(tmp_path, enabled=False)
    keeper = Keeper.build(config, current_platform(), sink=ListSink(), errors=ListErrors())
    assert keeper.firewall is None
    assert keeper.snapshot()["firewall"] == {"enabled": False}


# -- once per change with real rules, across a restart -------------------------------------

CHILD = r"""
import asyncio, json, subprocess, sys
from pathlib import Path
from nodekeeper.keeper.config import KeeperConfig
from nodekeeper.keeper.firewall_watch import FirewallWatch
from nodekeeper.logs import ErrorIndex, LogSettings, read_errors_since

config = KeeperConfig.model_validate(json.loads(sys.argv[1]))
index = ErrorIndex(config.logs_path(), LogSettings())
nft = lambda text: subprocess.run(["nft", "-f", "-"], input=text.encode(), check=True)
nft('table inet home {\n chain input {\n  type filter hook input priority 0; policy drop;\n }\n}\n')
seen = []

async def check(watch):
    seen.append((await watch.check(watch.target())).status)

async def main():
    first = FirewallWatch(config, lambda: "/usr/bin/storagenode", index)
    await check(first)
    await check(first)
    nft("insert rule inet home input tcp dport 28967 accept\n"
        "insert rule inet home input udp dport 28967 accept\n")
    await check(first)
    nft("flush chain inet home input\n")
    await check(first)
    restarted = FirewallWatch(config, lambda: "/usr/bin/storagenode", index)
    await check(restarted)

asyncio.run(main())
index.close()
entries = read_errors_since(config.logs_path(), 0)
print(json.dumps({"seen": seen, "entries": entries}))
"""


def test_real_rules_reach_the_error_index_once_per_change(tmp_path: Path) -> None:
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or not shutil.which("nft"):
        pytest.skip("needs root, nft and a private network namespace")
    if subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode != 0:
        pytest.skip("cannot make a network namespace here")
    settings = _settings(tmp_path)
    done = subprocess.run(
        ["unshare", "--net", sys.executable, "-c", CHILD, json.dumps(settings)],
        capture_output=True,
        timeout=120,
        cwd=ROOT,
        check=False,
        env={**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"},
    )
    assert done.returncode == 0, done.stderr.decode()
    result = json.loads(done.stdout.decode().splitlines()[-1])
    assert result["seen"] == ["blocked", "blocked", "allowed", "blocked", "blocked"]
    entries = result["entries"]
    # Blocked at start, and blocked again after it was open; not the repeat, not the
    # restarted keeper's first look at the same state (state/firewall.json).
    assert [e["reason"] for e in entries] == ["firewall-blocked", "firewall-blocked"]
    assert entries[0]["fix"] == [
        "nft insert rule inet home input tcp dport 28967 accept",
        "nft insert rule inet home input udp dport 28967 accept",
    ]
    assert entries[0]["protocols"] == {"tcp": "blocked", "udp": "blocked"}
    assert entries[0]["level"] == "ERROR"
