"""The announcement in the seed document's own form (``GET /seed``, issue 14): the mapping
from the store's snapshot (pure, table tests), and the real control plane serving it from
the same snapshot as ``/``, so that a client following the seed's rules and one following
Storj's decide the same for every node."""

from __future__ import annotations

import json
import os

import httpx
import pytest

from nodekeeper.server.models import ProcessRecord, ReleaseRecord, RolloutRecord, Snapshot
from nodekeeper.server.ramp import RampState
from nodekeeper.server.seed_document import build_seed_document, render_seed
from nodekeeper.version.decision import decide_update
from nodekeeper.version.rollout import ZERO_CURSOR, is_rollout_candidate
from nodekeeper.version.schema import parse_announcement
from nodekeeper.version.versions import parse_version
from tests.server.test_api import publish

NOW = 1_800_000_000.0
DAY = 86400.0


def process(
    versions: tuple[str, ...] = ("1.0.0", "1.1.0", "1.2.0"),
    minimum: str | None = None,
    rollout: tuple[str, RampState] | None = None,
    last_completed: str | None = None,
) -> ProcessRecord:
    releases = {v: ReleaseRecord("storagenode", v, 0.0) for v in versions}
    record = None
    if rollout is not None:
        record = RolloutRecord(1, "storagenode", rollout[0], "ab" * 32, rollout[1], 0.0)
    return ProcessRecord("storagenode", minimum, releases, record, last_completed)


def seed_form(p: ProcessRecord, at: float = NOW) -> dict:
    return build_seed_document(Snapshot(7, {"storagenode": p}), at)["processes"]["storagenode"]


def test_without_a_rollout_everyone_is_pointed_at_the_minimum() -> None:
    assert seed_form(process(minimum="1.1.0")) == {
        "allowed_version_minimum": "1.1.0",
        "suggested_version": "1.1.0",
        "rollout": {"active": False, "target_version": "", "rollout_seed": "",
                    "rollout_cursor": ZERO_CURSOR.hex(), "rollout_percent": 0.0},
    }  # fmt: skip
    # No explicit minimum: the oldest release, as in "/".
    assert seed_form(process())["allowed_version_minimum"] == "1.0.0"


@pytest.mark.parametrize(
    ("ramp", "active", "percent", "suggested"),
    [
        (RampState(25.0, None, None), True, 25.0, "1.1.0"),  # set by hand
        (RampState(10.0, 24.0, NOW - DAY / 2), True, 22.0, "1.1.0"),  # ramping
        (RampState(40.0, 24.0, None), True, 40.0, "1.1.0"),  # paused: still active
        (RampState(100.0, None, None), False, 100.0, "1.2.0"),  # complete: the target
        (RampState(90.0, 24.0, NOW - DAY), False, 100.0, "1.2.0"),  # ramped to the end
    ],
)
def test_a_rollout_in_the_seeds_words(
    ramp: RampState, active: bool, percent: float, suggested: str
) -> None:
    form = seed_form(process(rollout=("1.2.0", ramp), last_completed="1.1.0"))
    assert form["allowed_version_minimum"] == "1.0.0"
    assert form["suggested_version"] == suggested
    rollout = form["rollout"]
    assert (rollout["active"], rollout["target_version"]) == (active, "1.2.0")
    assert rollout["rollout_seed"] == "ab" * 32 and rollout["rollout_percent"] == percent


def test_suggested_is_never_below_the_minimum() -> None:
    # The last completed rollout is older than a minimum set since: the minimum wins.
    form = seed_form(process(minimum="1.2.0", last_completed="1.1.0"))
    assert form["suggested_version"] == "1.2.0"
    # A last completed version whose release was deleted is not pointed at.
    form = seed_form(process(versions=("1.0.0", "1.2.0"), last_completed="1.1.0"))
    assert form["suggested_version"] == "1.0.0"


def test_same_snapshot_and_time_give_the_same_bytes() -> None:
    snapshot = Snapshot(3, {"storagenode": process(rollout=("1.2.0", RampState(5, 24, NOW)))})
    first, tag = render_seed(snapshot, NOW + 60)
    assert render_seed(snapshot, NOW + 60) == (first, tag)
    assert render_seed(snapshot, NOW + 3600)[0] != first  # the cursor moved
    assert json.loads(first)["processes"]["storagenode"]["rollout"]["active"] is True


def seed_client_target(form: dict, current: str, node_id: bytes) -> str | None:
    """What a client written from the seed's text alone does."""
    rollout = form["rollout"]
    if rollout["active"] and is_rollout_candidate(
        node_id, bytes.fromhex(rollout["rollout_seed"]), bytes.fromhex(rollout["rollout_cursor"])
    ):
        target = rollout["target_version"]
    elif parse_version(current) < parse_version(form["allowed_version_minimum"]):
        target = form["suggested_version"]
    else:
        return None
    return target if parse_version(target) > parse_version(current) else None


@pytest.mark.e2e
def test_the_control_plane_serves_it_from_the_same_snapshot_as_slash(server, tmp_path) -> None:
    for version in ("1.0.0", "1.1.0"):
        publish(server, tmp_path, version)
    server.cli("rollout", "start", "storagenode", "1.1.0")
    server.cli("rollout", "set", "storagenode", "25")
    with httpx.Client(base_url=server.url) as client:
        slash = client.get("/")
        seed = client.get("/seed")
        assert seed.status_code == 200 and seed.headers["content-type"] == "application/json"
        form = seed.json()["processes"]["storagenode"]
        storj = parse_announcement(slash.content).processes["storagenode"]
        assert form["allowed_version_minimum"] == storj.minimum.version == "1.0.0"
        assert form["rollout"]["target_version"] == storj.suggested.version == "1.1.0"
        assert form["rollout"]["rollout_cursor"] == storj.rollout.cursor
        assert form["rollout"]["rollout_seed"] == storj.rollout.seed
        assert (form["rollout"]["active"], form["rollout"]["rollout_percent"]) == (True, 25.0)
        # Both clients decide alike for every node: in the rollout or not.
        nodes = [os.urandom(32) for _ in range(1000)]
        for node in nodes:
            assert (
                seed_client_target(form, "1.0.0", node)
                == decide_update("1.0.0", storj, node).target
            )
        assert 150 <= sum(seed_client_target(form, "1.0.0", n) is not None for n in nodes) <= 350
        # Its own ETag: unchanged while the store is, 304 on a match.
        etag = seed.headers["etag"]
        assert client.get("/seed", headers={"If-None-Match": etag}).status_code == 304
        server.cli("rollout", "set", "storagenode", "100")
        changed = client.get("/seed", headers={"If-None-Match": etag})
        assert changed.status_code == 200
        done = changed.json()["processes"]["storagenode"]
        assert done["rollout"]["active"] is False and done["suggested_version"] == "1.1.0"
