"""Rollouts that stop themselves, end to end (issue 14; decisions 078, 079).

A fleet of 8 real keeper processes, each supervising its own reference storage node, on
one real control plane (`nodekeeper server run`, health check every 0.5 s, a HealthRule
for a small fleet: at least 3 affected nodes, the default margin and alpha). Every
release is a real zip published through the admin API.

1. A deliberately bad release (a node build that crashes at start, tests/artifacts.py
   ``crash_at_start``) in the staged plan 50 % → 100 % with a 20 s soak: the seed is
   chosen so that exactly 4 of the 8 nodes are in the first stage. Those 4 get the bad
   version, fail to start it and roll back; the control plane pauses the rollout itself
   after 3 of them, well inside the first stage's soak, so the other 4 nodes never
   receive it. The operator aborts it.
2. A good release in the same plan ramps to 100 % unattended: the first stage soaks,
   the health check says continue, the stage moves on, every node runs it.
"""

from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from nodekeeper.identity import IdentitySource
from nodekeeper.server.client import AdminClient
from nodekeeper.version.decision import node_position
from nodekeeper.version.platforms import this_platform
from tests.artifacts import build_faulty, build_good
from tests.nodes import NodeSetup, setup_node
from tests.server.controlplane import TOKEN, ControlPlane
from tests.support import free_port

from .inprocess import PROCESS
from .lab import KeeperProcess, keeper_settings

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

FLEET = 8
FIRST_STAGE = 50.0
SOAK = 20.0  # the bad release pauses in ~3 s idle; margin for a loaded machine
DEADLINE = 60.0


class Member:
    """One keeper and its node."""

    def __init__(self, root: Path, server_url: str) -> None:
        self.root = root
        self.node: NodeSetup = setup_node(root / "node", "50 MB")
        self.data_dir = root / "keeper"
        self.config = root / "keeper.toml"
        settings = keeper_settings(self.data_dir, self.node, free_port(), server_url)
        self.config.write_bytes(tomli_w.dumps(settings).encode())
        identity = IdentitySource.in_config_dir(self.node.config_dir).get()
        self.node_id: bytes = identity.node_id
        self.node_id_hex = identity.node_id.hex()
        self.keeper: KeeperProcess | None = None

    def start(self) -> None:
        self.keeper = KeeperProcess(self.config, self.root / "keeper.log")

    def journal(self) -> dict[str, Any]:
        try:
            return json.loads((self.data_dir / "state" / "update.json").read_text())
        except (OSError, ValueError):
            return {}

    def committed(self, version: str) -> bool:
        journal = self.journal()
        return journal.get("current") == version and not journal.get("inflight")


class Fleet:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.cp = ControlPlane(
            root / "cp",
            extra_args=["--health-interval", "0.5", "--health-min-affected", "3"],
        ).start()
        self.admin = AdminClient(self.cp.url, TOKEN)
        with ThreadPoolExecutor(FLEET) as pool:  # `storagenode setup` is a child process each
            self.members = list(
                pool.map(lambda i: Member(root / f"m{i}", self.cp.url), range(FLEET))
            )

    def publish(self, version: str, kind: str = "good") -> None:
        out = self.root / "artifacts" / f"{version}-{kind}"
        path = build_good(version, out) if kind == "good" else build_faulty(kind, version, out)
        self.admin.publish(PROCESS, version, {this_platform(): str(path)})

    def start_staged(self, version: str, seed: str) -> None:
        self.admin.request(
            "POST",
            f"/v1/admin/processes/{PROCESS}/rollout",
            json={
                "version": version,
                "stages": [FIRST_STAGE, 100],
                "soak_seconds": SOAK,
                "seed": seed,
            },
        )

    def status(self) -> dict[str, Any]:
        return self.admin.request("GET", "/v1/admin/status")[0]

    def audit(self, action: str) -> list[dict[str, Any]]:
        entries = self.admin.request("GET", "/v1/admin/audit", params={"limit": 1000})
        return [e for e in entries if e["action"] == action]

    def reports(self) -> list[dict[str, Any]]:
        return self.admin.request("GET", "/v1/admin/reports", params={"limit": 10_000})

    def wait(self, check, what: str, timeout: float = DEADLINE) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = check()
            if result:
                return result
            time.sleep(0.1)
        tails = "\n".join(
            f"--- {m.root.name}: {m.journal()}\n"
            + "\n".join((m.root / "keeper.log").read_text(errors="replace").splitlines()[-8:])
            for m in self.members
        )
        raise AssertionError(
            f"timed out after {timeout} s waiting for {what}; status: "
            f"{json.dumps(self.status(), indent=1)[:2500]}\n{tails}"
        )

    def close(self) -> None:
        for member in self.members:
            if member.keeper is not None:
                try:
                    member.keeper.stop(20)
                except Exception:
                    member.keeper.kill()
        self.admin.close()
        self.cp.stop()


def seed_with_first_stage(members: list[Member], size: int) -> tuple[str, set[str]]:
    """A rollout seed that puts exactly ``size`` of the members in the first stage (and
    none within a hair of its edge), and those members' node ids (hex)."""
    for i in range(100_000):
        seed = hashlib.sha256(f"auto-pause-e2e-{i}".encode()).hexdigest()
        positions = {m.node_id_hex: node_position(m.node_id, bytes.fromhex(seed)) for m in members}
        inside = {n for n, p in positions.items() if p < FIRST_STAGE}
        edge = any(abs(p - FIRST_STAGE) < 0.5 for p in positions.values())
        if len(inside) == size and not edge:
            return seed, inside
    raise AssertionError("no seed found")  # 8 nodes: about one seed in four fits


@pytest.fixture
def fleet(tmp_path: Path):
    fleet = Fleet(tmp_path)
    try:
        yield fleet
    finally:
        fleet.close()


def test_a_bad_release_pauses_itself_in_the_first_stage_and_a_good_one_ramps_to_100(fleet):
    began = time.monotonic()
    fleet.publish("1.0.0")  # the first release: the minimum, every node installs it
    for member in fleet.members:
        member.start()
    fleet.wait(lambda: all(m.committed("1.0.0") for m in fleet.members), "the fleet on 1.0.0")
    fleet_ready = time.monotonic() - began

    # -- the bad release --------------------------------------------------------------
    fleet.publish("1.0.1", "crash_at_start")
    seed, first_stage = seed_with_first_stage(fleet.members, FLEET // 2)
    bad_began = time.monotonic()
    fleet.start_staged("1.0.1", seed)
    row = fleet.wait(
        lambda: (s := fleet.status())["state"] == "paused" and s, "the rollout to pause itself"
    )
    paused_after = time.monotonic() - bad_began
    assert paused_after < SOAK, "paused before the first stage could end"
    assert row["pause"]["by"] == "auto"
    assert (row["percent"], row["plan"]["stage"]) == (FIRST_STAGE, 0)
    numbers = row["pause"]["numbers"]
    assert numbers["candidate"] == "1.0.1" and numbers["baseline"] == "1.0.0"
    assert 3 <= numbers["failed"] <= numbers["updated"] <= FLEET // 2
    deciding = {r["node_id"] for r in row["pause"]["reports"]}
    assert len(deciding) == numbers["failed"] and deciding <= first_stage
    assert fleet.audit("rollout.stage") == []

    # Every node of the first stage tries 1.0.1, fails and rolls back; nobody else gets
    # it (the cursor stays at 50 %, the others' positions are above it).
    def got_bad() -> set[str]:
        return {
            r["node_id"]
            for r in fleet.reports()
            if (r["target_version"] or r["version"]) == "1.0.1"
        }

    fleet.wait(lambda: got_bad() == first_stage, "the first stage's nodes to report 1.0.1")
    fleet.wait(
        lambda: all(
            m.committed("1.0.0") and "1.0.1" in m.journal().get("failed", [])
            for m in fleet.members
            if m.node_id_hex in first_stage
        ),
        "the first stage back on 1.0.0",
    )
    others = [m for m in fleet.members if m.node_id_hex not in first_stage]
    assert all(m.committed("1.0.0") and not m.journal().get("failed") for m in others)
    # The number of nodes that got the bad version: the first stage's 4 of 8.
    assert len(got_bad()) == FLEET // 2
    assert fleet.status()["state"] == "paused"  # still frozen; the operator decides
    assert len(fleet.audit("rollout.auto_pause")) == 1
    fleet.cp.cli("rollout", "abort", PROCESS)
    assert fleet.status()["state"] == "aborted"

    # -- the good release -------------------------------------------------------------
    fleet.publish("1.0.2")
    good_began = time.monotonic()
    fleet.start_staged("1.0.2", seed)
    fleet.wait(
        lambda: all(m.committed("1.0.2") for m in fleet.members),
        "every node on 1.0.2",
        timeout=SOAK + DEADLINE,
    )
    good_took = time.monotonic() - good_began
    row = fleet.status()
    assert row["state"] == "complete" and row["percent"] == 100
    assert [a["detail"]["version"] for a in fleet.audit("rollout.stage")] == ["1.0.2"]
    assert len(fleet.audit("rollout.auto_pause")) == 1  # only the bad release's
    assert good_took >= SOAK  # the first stage was held its soak
    print(
        f"\nfleet of {FLEET} on 1.0.0 in {fleet_ready:.1f} s; bad 1.0.1 reached "
        f"{len(got_bad())} of {FLEET} nodes and paused itself after {paused_after:.1f} s "
        f"({numbers['failed']} of {numbers['updated']} failed); good 1.0.2 on every node "
        f"after {good_took:.1f} s; total {time.monotonic() - began:.1f} s"
    )
