"""The check loop's timing and conditional checks, in-process (tests/updater/inprocess.py):
an unreachable control plane backs off and leaves the node alone; unchanged documents
are fetched conditionally (304) and a Retry-After holds the next check back. The waits
are the ones the loop asked its clock for, exactly (u = 0.5: no jitter)."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from tests.updater.httpserver import FileServer

from .inprocess import Rig, rig_fixture

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


rig = rig_fixture()


async def test_control_plane_outage_backs_off_and_leaves_the_node_alone(rig: Rig) -> None:
    await rig.install_first()
    rig.cp.stop()
    await rig.cycles(3)
    assert rig.cycle.snapshot()["failed_checks_in_row"] == 3
    failed = [r for r in rig.log.records if "update check failed" in r.getMessage()]
    assert [r.levelno for r in failed] == [logging.WARNING, logging.INFO, logging.INFO]
    # First check at once, the interval, then backoff 0.5 s, 1 s, 2 s (the cap).
    assert rig.clock.waits == [0.0, 1.0, 0.5, 1.0, 2.0]
    [entry] = rig.entries("check_failed")
    assert "cannot reach the control plane" in entry["message"]
    assert rig.node.started == ["1.0.0"] and rig.node.running_version() == "1.0.0"
    rig.cp.start()
    rig.release("1.0.1")
    await rig.cycles(1)
    assert rig.journal()["current"] == "1.0.1", rig.describe()
    assert rig.cycle.snapshot()["failed_checks_in_row"] == 0
    assert "control plane reachable again after 3 failed checks" in rig.log.text()
    assert rig.clock.waits[-1] == 1.0  # back to the interval


async def test_checks_send_if_none_match_and_honour_retry_after(rig: Rig) -> None:
    """The announcement is served by a controllable server (the control plane's own
    document): unchanged documents are fetched conditionally (304), and a 503 with
    Retry-After: 3 holds the next check back 3 s (+ jitter), far beyond the backoff."""
    rig.publish("1.0.0")
    document = httpx.get(rig.cp.url + "/", timeout=30).content
    with FileServer() as announcer:
        announcer.add("/", document, etag=True)
        rig.server = announcer.url
        rig.start()
        await rig.cycles(2)
        assert [s.status for s in announcer.served] == [200, 304], rig.describe()
        assert announcer.served[1].if_none_match
        announcer.fault(status=503, retry_after="3")
        await rig.cycles(2)
    assert [s.status for s in announcer.served] == [200, 304, 503, 304]
    # Every check after the first is conditional, the one refused with 503 too.
    assert all(s.if_none_match for s in announcer.served[1:])
    # The interval after each good check; after the 503, Retry-After × (1 + 0.1 × 0.5).
    assert rig.clock.waits == pytest.approx([0.0, 1.0, 1.0, 3.15, 1.0])
    assert rig.node.running_version() == "1.0.0" and rig.cycle.checks == 3


async def test_a_plan_waits_while_the_other_loop_carries_one_out(rig: Rig) -> None:
    """The keeper's own loop and the node's share one lock (decision 063): while the
    keeper's holds it (on its way to a hand-over), the node's decided update waits, and
    goes ahead once it is free."""
    await rig.install_first()
    rig.release("1.0.1")
    lock = rig.cycle.update_lock
    await lock.acquire()  # the keeper's own update, in progress
    cycle = asyncio.create_task(rig.cycles(1))
    for _ in range(1000):  # until the loop has decided and reached the lock
        if rig.cycle.updating == "1.0.1":
            break
        await asyncio.sleep(0.01)
    assert rig.cycle.updating == "1.0.1", rig.describe()
    assert not cycle.done()
    assert rig.journal()["current"] == "1.0.0" and rig.node.running_version() == "1.0.0"
    lock.release()
    await cycle
    assert rig.node.running_version() == "1.0.1", rig.describe()
