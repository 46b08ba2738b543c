"""The keeper's side of the dial-back (decision 082), in-process: the real
`ReachabilityWatch` against a real control plane on loopback, the reference node's QUIC
responder on a real port, the real report sender; and the result in `nodekeeper status`'s
text, the tray's Status screen and the metrics. The end-to-end run with a keeper process
is in tests/keeper/test_reachability_e2e.py."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from nodekeeper.identity import IdentitySource
from nodekeeper.keeper.config import ConfigError, KeeperConfig, load_config
from nodekeeper.keeper.metrics import render
from nodekeeper.keeper.reachability import ReachabilityWatch, declared_address
from nodekeeper.keeper.reachability_rules import (
    Asked,
    becomes_unreachable,
    next_delay,
    valid_result,
)
from nodekeeper.keeper.reports import Reporter, ReporterSettings
from nodekeeper.keeper.status_view import render_status, status_rows
from nodekeeper.tray.status_screen import sections
from tests.server.controlplane import ControlPlane
from tests.server.test_reachability import Target

RESULT = {
    "tcp": "reachable",
    "udp": "no_answer",
    "address": "203.0.113.7:28967",
    "checked_at": 0.0,
    "detail": "TCP to 203.0.113.7:28967 connected in 3 ms. UDP: no answer.",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ControlPlane(tmp_path_factory.mktemp("reach") / "cp") as cp:
        yield cp


def node_dir(root: Path, external: str | None) -> Path:
    """A node's config dir as `storagenode setup` leaves it, as far as the keeper reads it:
    the identity key, and config.toml with the operator's external address."""
    config_dir = root / "node"
    config_dir.mkdir(parents=True)
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (config_dir / "identity.key").write_bytes(pem)
    operator = f'\n[operator]\nexternal_address = "{external}"\n' if external else ""
    (config_dir / "config.toml").write_text(f'listen = ":28967"{operator}')
    return config_dir


def keeper_config(root: Path, server: ControlPlane, external: str | None, **reach) -> KeeperConfig:
    return KeeperConfig.model_validate(
        {
            "data_dir": str(root / "data"),
            "node": {"config_dir": str(node_dir(root, external))},
            "update": {"server": server.url},
            "reachability": reach,
        }
    )


def status_with(watch: ReachabilityWatch) -> dict:
    """A keeper status as /status gives it, with the watch's part (the rest minimal)."""
    return {
        "state": "running", "pid": 1, "version": "1.0.0", "uptime_seconds": 60.0,
        "crash_loop": False, "restarts": 0, "recent_failures": 0, "next_start_in": None,
        "last_exit": None, "last_pulse": None, "probe": {"kind": "http",
        "consecutive_failures": 0},
        "memory": {"bytes": None, "kind": None, "soft_limit": None, "hard_limit": None,
                   "soft_limit_restarts": 0},
        "cpu": {"percent": None, "rate_limit_percent": None, "cores": None,
                "priority": "normal"},
        "reachability": watch.snapshot(),
    }  # fmt: skip


def test_a_check_lands_in_the_status_the_tray_and_the_metrics_and_429_is_honoured(tmp_path, server):
    target = Target()
    try:
        config = keeper_config(tmp_path, server, target.address)
        watch = ReachabilityWatch(config, healthy=lambda: True)
        asked = asyncio.run(watch.ask())
    finally:
        target.close()
    assert asked.status == 200 and asked.result is not None
    assert asked.result["tcp"] == "reachable" and asked.result["udp"] == "reachable"
    snap = watch.snapshot()
    assert snap["address"] == target.address and snap["last"] == asked.result
    assert snap["last_error"] is None
    assert next_delay(asked, 21600, 900) == 21600

    status = status_with(watch)
    checked = time.strftime("%H:%M", time.localtime(asked.result["checked_at"]))
    line = f"TCP reachable, UDP reachable (checked {checked})"
    assert dict(status_rows(status))["from outside"] == line
    assert f"from outside    {line}" in render_status(status)
    node = dict(dict(sections(status))["Node"])
    assert node["from outside"] == line
    metrics = render(lambda: status).decode()
    assert 'nodekeeper_reachability_tcp{status="reachable"} 1.0' in metrics
    assert 'nodekeeper_reachability_udp{status="no_answer"} 0.0' in metrics
    assert "nodekeeper_reachability_last_try_failed 0.0" in metrics

    # At once again: the control plane's per-node limit answers 429 with Retry-After,
    # which is the next wait; the last result stands.
    again = asyncio.run(watch.ask())
    assert again.status == 429 and again.result is None
    assert again.retry_after is not None and 590 <= again.retry_after <= 600
    assert next_delay(again, 21600, 900) == again.retry_after
    assert watch.snapshot()["last"] == asked.result
    assert (
        "refused (429): this node was checked less than 10 minutes ago"
        in (watch.snapshot()["last_error"])
    )
    assert (
        "; last try: the control plane refused (429)"
        in dict(status_rows(status_with(watch)))["from outside"]
    )
    # The result survives a restart.
    assert ReachabilityWatch(config, healthy=lambda: True).last == asked.result


def test_becoming_unreachable_is_reported_once(tmp_path, server):
    """An earlier check (kept in the state file) found the node reachable; now nothing
    listens: the real report sender delivers one `unreachable` report to the control
    plane. A restarted keeper finding it unreachable again reports nothing new."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = keeper_config(tmp_path, server, f"127.0.0.1:{port}")
    state = config.state_path()
    state.mkdir(parents=True)
    (state / "reachability.json").write_text(json.dumps({"last": RESULT}))
    reporter = Reporter(
        ReporterSettings(server.url, state / "reports"),
        IdentitySource.in_config_dir(config.node_config_path()),
    )
    watch = ReachabilityWatch(
        config, healthy=lambda: True, reports=reporter, version=lambda: "1.0.0"
    )

    async def check_and_send() -> None:
        sender = asyncio.create_task(reporter.run())
        try:
            await watch.ask()
            assert await reporter.drain(30)
        finally:
            sender.cancel()

    asyncio.run(check_and_send())
    assert watch.last["tcp"] == "unreachable"
    stored = server.admin().get("/v1/admin/reports", params={"limit": 100}).json()
    mine = [r for r in stored if r["kind"] == "unreachable" and r["node_id"] == _hex(config)]
    assert len(mine) == 1
    assert mine[0]["details"] == {"tcp": "unreachable", "udp": "unreachable",
                                  "address": f"127.0.0.1:{port}"}  # fmt: skip
    assert "Forward TCP port" in mine[0]["message"] and mine[0]["version"] == "1.0.0"

    restarted = ReachabilityWatch(config, healthy=lambda: True, reports=reporter)
    assert not becomes_unreachable(restarted.last, watch.last)


def _hex(config: KeeperConfig) -> str:
    return IdentitySource.in_config_dir(config.node_config_path()).get().node_id.hex()


def test_the_loop_asks_once_the_node_is_healthy(tmp_path, server):
    target = Target()
    healthy = threading.Event()
    try:
        config = keeper_config(tmp_path, server, target.address)
        watch = ReachabilityWatch(config, healthy=healthy.is_set, health_poll_seconds=0.02)

        async def scenario() -> float:
            task = asyncio.create_task(watch.run())
            await asyncio.sleep(0)  # the loop is waiting on health now
            became_healthy = time.time()
            healthy.set()
            deadline = time.monotonic() + 30
            while watch.last is None:
                assert time.monotonic() < deadline, watch.snapshot()
                await asyncio.sleep(0.02)
            task.cancel()
            return became_healthy

        became_healthy = asyncio.run(scenario())
    finally:
        target.close()
    assert watch.last_attempt_at >= became_healthy  # not before the node was healthy
    assert watch.snapshot()["next_check_in"] is not None


def test_a_control_plane_that_never_answers_ends_at_the_deadline(tmp_path, server):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts (the kernel does), never answers
    config = KeeperConfig.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "node": {"config_dir": str(node_dir(tmp_path, "127.0.0.1:28967"))},
            "update": {"server": f"http://127.0.0.1:{silent.getsockname()[1]}"},
            "reachability": {"request_deadline_seconds": 0.5},
        }
    )
    try:
        started = time.monotonic()
        asked = asyncio.run(ReachabilityWatch(config, healthy=lambda: True).ask())
        took = time.monotonic() - started
    finally:
        silent.close()
    assert asked.status is None and "did not answer within 0.5 s" in asked.error
    assert took < 5
    assert next_delay(asked, 21600, 900) == 900


def test_the_declared_address_comes_from_the_keeper_then_the_nodes_files(tmp_path, server):
    config = keeper_config(tmp_path / "a", server, "node.example.net:28967")
    assert declared_address(config)[0] == "node.example.net:28967"
    overridden = keeper_config(
        tmp_path / "b", server, "node.example.net:1", address="198.51.100.4:2"
    )
    assert declared_address(overridden) == ("198.51.100.4:2", "reachability.address")
    none = keeper_config(tmp_path / "c", server, None)
    address, why = declared_address(none)
    assert address is None and "storagenode setup --external-address HOST:PORT" in why
    storj = keeper_config(tmp_path / "d", server, None)
    (storj.node_config_path() / "config.toml").unlink()
    (storj.node_config_path() / "config.yaml").write_text(
        'server.address: :28967\ncontact.external-address: "node.example.org:28967"\n'
    )
    assert declared_address(storj)[0] == "node.example.org:28967"
    # No address: the watch asks nothing and says why.
    watch = ReachabilityWatch(none, healthy=lambda: True)
    asked = asyncio.run(watch.ask())
    assert asked.status is None and watch.snapshot()["last_error"] == why
    assert dict(status_rows(status_with(watch)))["from outside"].startswith(
        "not checked yet; last try: the node has no external address"
    )


def test_a_bad_reachability_address_is_a_config_error(tmp_path):
    path = tmp_path / "keeper.toml"
    path.write_text('[reachability]\naddress = "http://node.example/"\n')
    with pytest.raises(ConfigError, match=r"reachability\.address: .*not HOST:PORT"):
        load_config(path)


@pytest.mark.parametrize(
    ("previous", "now", "news"),
    [
        (None, {"tcp": "unreachable", "udp": "no_answer"}, True),
        (None, {"tcp": "reachable", "udp": "no_answer"}, False),  # no QUIC is not news
        (None, {"tcp": "reachable", "udp": "unreachable"}, True),
        ({"tcp": "reachable", "udp": "reachable"}, {"tcp": "unreachable", "udp": "reachable"},
         True),
        ({"tcp": "unreachable", "udp": "reachable"}, {"tcp": "unreachable", "udp": "no_answer"},
         False),
        ({"tcp": "unreachable", "udp": "no_answer"}, {"tcp": "reachable", "udp": "no_answer"},
         False),
    ],
)  # fmt: skip
def test_becomes_unreachable(previous, now, news):
    assert becomes_unreachable(previous, now) is news


def test_what_the_keeper_takes_from_an_answer():
    assert valid_result(RESULT) == RESULT
    no_udp = {k: v for k, v in RESULT.items() if k != "udp"}
    bad = [None, [], {**RESULT, "tcp": "maybe"}, {**RESULT, "checked_at": True},
           {**RESULT, "detail": 5}, no_udp]  # fmt: skip
    assert [valid_result(b) for b in bad] == [None] * len(bad)
    assert next_delay(Asked(429, retry_after=0.0), 21600, 900) == 1.0
    assert next_delay(Asked(503, retry_after=120.0), 21600, 900) == 120.0
    assert next_delay(Asked(403, error="x"), 21600, 900) == 900
