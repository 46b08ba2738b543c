"""The update cycle in-process against a real HTTP server: one INFO line per change of
decision (issue 9: an announcement that tells the node to go backwards left no trace
above DEBUG), and ``check_now`` runs a cycle at once without a second concurrent one."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from nodekeeper.keeper.config import KeeperConfig
from nodekeeper.keeper.status_view import rollout_sentence
from nodekeeper.keeper.supervisor import Supervisor
from nodekeeper.platform import current_platform
from nodekeeper.updater.cycle import CycleSettings, UpdateCycle
from nodekeeper.updater.machine import Layout, MachineSettings, UpdateMachine
from nodekeeper.updater.schedule import CheckTiming
from nodekeeper.updater.state import UpdateState
from nodekeeper.version.rollout import percentage_to_cursor
from tests.keeper.conftest import fast_settings
from tests.updater.httpserver import FileServer

pytestmark = pytest.mark.timeout(120)

PLATFORM = "linux_amd64"
SHA = "ab" * 32


def announcement(minimum: str, suggested: str, percent: float = 0) -> bytes:
    def ref(version: str) -> dict:
        return {
            "version": version,
            "url": f"http://cp.example/{version}",
            "artifacts": {
                PLATFORM: {"url": f"http://cdn.example/{version}.zip", "sha256": SHA, "size": 1}
            },
        }

    return json.dumps(
        {
            "processes": {
                "storagenode": {
                    "minimum": ref(minimum),
                    "suggested": ref(suggested),
                    "rollout": {"seed": "cd" * 32, "cursor": percentage_to_cursor(percent).hex()},
                }
            }
        }
    ).encode()


def make_cycle(tmp_path: Path, server_url: str, interval: float = 3600.0) -> UpdateCycle:
    config = KeeperConfig.model_validate(fast_settings(tmp_path, ["true"]))
    node = Supervisor(config, current_platform())  # real, not started: "stopped"
    machine = UpdateMachine(
        MachineSettings(process="storagenode", platform=PLATFORM, args=[]),
        Layout(tmp_path / "data"),
        node,
    )
    machine.state = UpdateState("storagenode", current="1.3.0")
    settings = CycleSettings(
        server=server_url,
        timing=CheckTiming(interval=interval, jitter=0.0),
        node_id="12EayRS2V1kEsWESU9QMRseFhdxYxKicsiFmxrsLZHeLUtdps3S",
    )
    return UpdateCycle(settings, machine, node)


def decision_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.INFO and r.getMessage().startswith("update decision")
    ]


def test_one_info_line_per_change_of_decision(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="nodekeeper.updater")
    with FileServer() as server:
        cycle = make_cycle(tmp_path, server.url)

        async def scenario() -> None:
            # Backwards: installed 1.3.0, announced 1.0.0 / 1.2.0, three cycles.
            server.add("/", announcement("1.0.0", "1.2.0"))
            for _ in range(3):
                await cycle.once()
            lines = decision_lines(caplog)
            assert len(lines) == 1
            assert "minimum 1.0.0 and suggested 1.2.0, below the installed 1.3.0" in lines[0]
            assert "not going backwards" in lines[0]
            # A new announcement that is still below: a new decision, one more line.
            server.add("/", announcement("1.0.0", "1.2.5"))
            for _ in range(3):
                await cycle.once()
            assert len(decision_lines(caplog)) == 2
            # Up to date: another change, one line; repeating it adds none.
            server.add("/", announcement("1.0.0", "1.3.0"))
            for _ in range(3):
                await cycle.once()
            lines = decision_lines(caplog)
            assert len(lines) == 3 and "1.3.0 is up to date" in lines[2]
            assert cycle.checks == 9
            assert cycle.snapshot()["decision"]["code"] == "up-to-date"

        asyncio.run(scenario())


def test_check_now_wakes_the_loop_and_shares_one_cycle(tmp_path: Path) -> None:
    with FileServer() as server:
        server.add("/", announcement("1.0.0", "1.2.0"))
        cycle = make_cycle(tmp_path, server.url)
        cycle.settings = CycleSettings(**{**cycle.settings.__dict__, "first_check_now": True})

        async def scenario() -> None:
            task = asyncio.create_task(cycle.run())
            try:
                while cycle.checks < 1 or cycle.next_check_mono is None:
                    await asyncio.sleep(0.01)
                assert cycle.snapshot()["next_check_in"] > 3000  # asleep for an hour
                server.add("/", announcement("1.0.0", "1.3.0"))
                # Three callers at once: one cycle answers all of them.
                results = await asyncio.wait_for(
                    asyncio.gather(*(cycle.check_now() for _ in range(3))), 60
                )
                assert cycle.checks == 2
                for result in results:
                    assert result["decision"]["code"] == "up-to-date"
                    assert result["check"]["ok"] and not result["busy"]
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

        asyncio.run(scenario())


def test_without_identity_the_status_says_the_position_is_unknown(tmp_path: Path) -> None:
    with FileServer() as server:
        server.add("/", announcement("1.0.0", "1.4.0", percent=40))
        cycle = make_cycle(tmp_path, server.url)
        cycle.settings = CycleSettings(
            server=server.url,
            timing=CheckTiming(interval=3600.0, jitter=0.0),
            node_config_dir=tmp_path / "not-set-up",
        )

        async def scenario() -> dict:
            await cycle.once()
            return cycle.snapshot()

        snapshot = asyncio.run(scenario())
        assert snapshot["identity_error"]
        decision = snapshot["decision"]
        assert decision["code"] == "waiting-for-rollout" and decision["target"] is None
        assert decision["rollout"]["position"] is None
        assert decision["rollout"]["percent"] == pytest.approx(40.0)
        assert "unknown until it has an identity" in rollout_sentence(decision)
