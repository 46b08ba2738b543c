"""The keeper's own check loop in-process: the node's ``updater.cycle.UpdateCycle`` with
the keeper's ``SelfUpdater`` as its runner, against a real HTTP server serving a real
announcement and real keeper release zips, with a real launcher state dir.

What the keeper's loop does differently from the node's is a parameter of the one cycle:
it logs as "keeper update", leaves the shared problems (control plane down, no identity)
to the node's loop, does not wait for the node's setup, and ends after a hand-over."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from nodekeeper import __version__
from nodekeeper.launcher import statefile
from nodekeeper.launcher.decide import State
from nodekeeper.launcher.protocol import state_dir, versions_dir
from nodekeeper.selfupdate import handover
from nodekeeper.selfupdate.handover import LauncherLink
from nodekeeper.selfupdate.runner import SelfUpdateSettings, keeper_update_cycle
from nodekeeper.updater.cycle import CycleSettings, UpdateCycle
from nodekeeper.updater.schedule import CheckTiming
from tests.selfupdate.keepers import build_keeper
from tests.updater.httpserver import FileServer

pytestmark = pytest.mark.timeout(120)

PLATFORM = "linux_amd64"
# The keys the status's ``self_update`` block had before the loop was the node's one;
# they stay, with the same meaning.
SELF_UPDATE_KEYS = {
    "process",
    "current",
    "launcher_current",
    "previous",
    "pending",
    "failed",
    "handed_over",
    "last_outcome",
    "last_error",
    "checks",
    "failed_checks_in_row",
}


@pytest.fixture(autouse=True)
def fresh_process_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    """hand_over marks the process; each test starts as a keeper that has not."""
    monkeypatch.setattr(handover, "_handed_over", None)


class Keeper:
    """What the loop talks to besides the server: the shutdown it calls after the
    hand-over, the reporter and the error index (these two are tested with their own
    modules)."""

    def __init__(self) -> None:
        self.stops = 0
        self.reports: list[tuple[str, str | None]] = []
        self.heartbeats: list[tuple[str, str]] = []
        self.errors: list[str] = []

    def shutdown(self) -> None:
        self.stops += 1

    def report(self, kind: str, message: str, **fields: Any) -> None:
        self.reports.append((kind, fields.get("target_version")))

    def heartbeat(self, process: str, version: str) -> None:
        self.heartbeats.append((process, version))

    def record(self, source: str, level: int, message: str, **fields: Any) -> None:
        self.errors.append(fields["reason"])


def announce(files: FileServer, zip_path: Path, version: str) -> None:
    """Announce keeper ``version`` as the minimum, served from ``files``."""
    data = zip_path.read_bytes()
    url = files.add(f"/{zip_path.name}", data)
    artifact = {"url": url, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    ref = {"version": version, "url": files.url, "artifacts": {PLATFORM: artifact}}
    rollout = {"seed": "cd" * 32, "cursor": "0" * 64}
    doc = {"processes": {"nodekeeper": {"minimum": ref, "suggested": ref, "rollout": rollout}}}
    files.add("/", json.dumps(doc).encode())


def make_cycle(tmp_path: Path, files: FileServer, keeper: Keeper) -> UpdateCycle:
    link = LauncherLink(state_dir(tmp_path), versions_dir(tmp_path), running=__version__)
    link.state_dir.mkdir(parents=True)
    statefile.save_state(link.state_dir, State(current=__version__))
    check = CycleSettings(
        server=files.url,
        timing=CheckTiming(interval=3600.0, jitter=0.0),
        first_check_now=True,
        node_config_dir=tmp_path / "no-identity-here",  # only the minimum applies
    )
    cycle = keeper_update_cycle(
        check,
        SelfUpdateSettings(platform=PLATFORM, data_dir=tmp_path),
        shutdown=keeper.shutdown,
        reports=keeper,
        errors=keeper,
        link=link,
    )
    assert cycle is not None
    return cycle


def messages(caplog: pytest.LogCaptureFixture, level: int = logging.INFO) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= level]


@pytest.fixture
def files() -> Any:
    with FileServer() as server:
        yield server


def test_the_loop_hands_over_and_ends(
    tmp_path: Path, files: FileServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    keeper = Keeper()
    announce(files, build_keeper("good", "9.9.0", tmp_path / "rel"), "9.9.0")
    cycle = make_cycle(tmp_path, files, keeper)

    async def scenario() -> dict[str, Any]:
        await asyncio.wait_for(cycle.run(), 90)  # returns by itself after the hand-over
        return cycle.snapshot()

    status = asyncio.run(scenario())
    assert keeper.stops == 1 and statefile.read_request(state_dir(tmp_path)) == "9.9.0"
    assert set(status) >= SELF_UPDATE_KEYS
    assert (status["process"], status["handed_over"], status["checks"]) == (
        "nodekeeper",
        "9.9.0",
        1,
    )
    assert status["last_outcome"]["outcome"] == "handed-over"
    # No identity: the minimum applied, and the node's loop is the one that says so.
    assert status["identity_error"] and not any(
        "minimum version applies" in m for m in messages(caplog)
    )
    assert keeper.reports == [] and keeper.errors == [] and keeper.heartbeats == []
    text = "\n".join(messages(caplog))
    assert f"keeper update decision: {__version__} is below the minimum 9.9.0" in text
    assert f"updating the keeper {__version__} → 9.9.0" in text


def test_failed_checks_are_left_to_the_nodes_loop(
    tmp_path: Path, files: FileServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    keeper = Keeper()
    cycle = make_cycle(tmp_path, files, keeper)
    files.add("/", json.dumps({"processes": {}}).encode())

    async def scenario() -> None:
        files.fault(status=503)
        await cycle.once()
        assert cycle.failures == 1
        await cycle.once()
        await cycle.once()
        assert (cycle.failures, cycle.checks) == (0, 2)

    asyncio.run(scenario())
    assert "keeper update check failed (1 in a row): " in "\n".join(messages(caplog))
    assert not messages(caplog, logging.WARNING) and keeper.errors == []
    assert not any("reachable again" in m for m in messages(caplog))
    # A heartbeat after the first cycle (the running version is new), then hourly.
    assert keeper.heartbeats == [("nodekeeper", __version__)]
    assert keeper.stops == 0


def test_a_release_that_fails_preflight_is_fetched_once(
    tmp_path: Path, files: FileServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    keeper = Keeper()
    zip_path = build_keeper("broken_version", "9.9.1", tmp_path / "rel")
    announce(files, zip_path, "9.9.1")
    cycle = make_cycle(tmp_path, files, keeper)

    async def scenario() -> dict[str, Any]:
        for _ in range(3):
            await cycle.once()
        return cycle.snapshot()

    status = asyncio.run(scenario())
    assert sum(s.path == f"/{zip_path.name}" for s in files.served) == 1
    assert keeper.reports == [("update_failed", "9.9.1")]
    assert keeper.errors == ["preflight_failed"]
    assert status["failed"] == ["9.9.1"] and status["handed_over"] is None
    assert status["decision"]["skipped"] == "9.9.1" and keeper.stops == 0
    skipped = [m for m in messages(caplog) if m.startswith("keeper update decision:")]
    assert len(skipped) == 2  # the update, then the skip once (not every cycle)
