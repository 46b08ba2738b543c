"""The supervisor's events reach the control plane through `ReportingErrorSink`, wired
exactly as the keeper will wire it: the real supervisor, a real crashing node, the real
error index, a real control plane."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from nodekeeper.keeper.reports import ReportingErrorSink
from nodekeeper.keeper.reports.supervisor_sink import REASON_KINDS, UNKNOWN_VERSION
from nodekeeper.keeper.supervisor import Supervisor
from nodekeeper.logs import ErrorIndex, LogSettings, read_errors_since
from nodekeeper.platform import current_platform
from tests.keeper.conftest import ListSink, fast_config
from tests.keeper.reports.conftest import Sending, make_reporter, stored, wait_until, write_identity
from tests.server.controlplane import ControlPlane

pytestmark = pytest.mark.timeout(60)


def test_crash_loop_is_reported_and_still_indexed(tmp_path: Path, server: ControlPlane) -> None:
    node = write_identity(tmp_path / "node")
    reporter = make_reporter(tmp_path / "reports", tmp_path / "node", server.url)
    index = ErrorIndex(tmp_path / "logs", LogSettings())
    sink = ReportingErrorSink(reporter, version=lambda: "1.2.0", index=index)
    crasher = [sys.executable, "-c", "import sys; sys.exit(3)"]
    supervisor = Supervisor(
        fast_config(tmp_path, crasher), current_platform(), sink=ListSink(), errors=sink
    )
    began = time.time()

    async def scenario() -> None:
        async with Sending(reporter):
            task = asyncio.create_task(supervisor.run())
            try:
                # Three crashes in the window (fast settings) flag the crash loop.
                await wait_until(lambda: supervisor.status.crash_loop, 20, "the crash loop")
                assert await reporter.drain(10)
            finally:
                supervisor.request_shutdown()
                await asyncio.wait_for(task, 10)

    asyncio.run(scenario())
    index.close()
    [row] = [r for r in stored(server, node) if r["kind"] == "crash_loop"]
    assert row["version"] == "1.2.0" and row["process"] == "storagenode"
    assert "crash loop" in row["message"] and row["details"]["reason"] == "crash-loop"
    # Single crashes are indexed for the operator but not sent to the network.
    assert {r["kind"] for r in stored(server, node)} == {"crash_loop"}
    reasons = [e.get("reason") for e in read_errors_since(tmp_path / "logs", began - 1)]
    assert reasons.count("crash") >= 3 and "crash-loop" in reasons


def queued(tmp_path: Path) -> list[dict[str, Any]]:
    """The reports a real (not sending) reporter queued, oldest first."""
    reporter = make_reporter(tmp_path / "reports", tmp_path / "node", "http://127.0.0.1:9")
    assert reporter.outbox.queue is not None
    q = reporter.outbox.queue
    return [q.read(e)["report"] for e in q.entries()]


class BrokenIndex:
    """An index whose disk fails (a real failing disk cannot be made as root here)."""

    def record(self, source: str, level: int, message: str, **fields: Any) -> Any:
        raise OSError("disk full")


def test_each_reason_maps_to_its_kind_and_version_falls_back(tmp_path: Path) -> None:
    reporter = make_reporter(tmp_path / "reports", tmp_path / "node", "http://127.0.0.1:9")
    versions = iter(["1.0.0", None, "1.0.0"])
    sink = ReportingErrorSink(reporter, version=lambda: next(versions))
    sink.record("keeper", logging.ERROR, "hung!", reason="hung")
    sink.record("keeper", logging.WARNING, "memory!", reason="memory")
    sink.record("keeper", logging.WARNING, "killed after 30 s", reason="stop-timeout")
    for reason in ("crash", "start-failed", "needs-setup", None):
        sink.record("keeper", logging.ERROR, "not reported", reason=reason, exit_code=1)
    reports = queued(tmp_path)
    assert [r["kind"] for r in reports] == ["hang", "limit_hit", "stop_timeout"]
    assert reports[0]["version"] == "1.0.0" and reports[0]["details"] == {"reason": "hung"}
    assert reports[1]["version"] == UNKNOWN_VERSION
    assert reports[1]["details"] == {"reason": "memory", "version_unknown": True}
    assert set(REASON_KINDS.values()) == {"hang", "limit_hit", "crash_loop", "stop_timeout"}


def test_the_report_is_queued_even_when_the_index_fails(tmp_path: Path) -> None:
    reporter = make_reporter(tmp_path / "reports", tmp_path / "node", "http://127.0.0.1:9")
    sink = ReportingErrorSink(reporter, version=lambda: "1.0.0", index=BrokenIndex())
    with pytest.raises(OSError):  # the supervisor catches and logs this, as before
        sink.record("keeper", logging.ERROR, "loop", reason="crash-loop")
    assert [r["kind"] for r in queued(tmp_path)] == ["crash_loop"]
