"""A control plane that trickles its answer to a report, one byte at a time.

httpx's timeouts are per read: without a whole-request deadline one send (and every report
queued behind it) was held for as long as the server liked. A real trickling socket
server on loopback; the sender gives up at the deadline and retries later.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from nodekeeper.identity import IdentitySource
from nodekeeper.keeper.reports import Reporter, ReporterSettings
from tests.keeper.reports.conftest import FAST, Sending, wait_until, write_identity
from tests.updater.trickle import trickling

pytestmark = pytest.mark.timeout(120)


def test_a_trickled_answer_ends_at_the_deadline_and_the_report_waits(tmp_path: Path) -> None:
    write_identity(tmp_path / "node")
    # 4 KiB at a byte per 50 ms: 205 s, every byte inside the 5 s read timeout.
    with trickling(status=202, interval=0.05) as server:
        settings = ReporterSettings(
            server_url=server.url,
            directory=tmp_path / "reports",
            timing=FAST,
            request_timeout=5.0,
            request_deadline=1.5,
        )
        reporter = Reporter(settings, IdentitySource.in_config_dir(tmp_path / "node"))
        assert reporter.report("hang", "x", process="storagenode", version="1.0.0")

        async def scenario() -> float:
            began = time.monotonic()
            async with Sending(reporter):
                await wait_until(
                    lambda: reporter.stats.failures_in_row >= 1,
                    timeout=60,
                    what="the first send to give up",
                )
            return time.monotonic() - began

        took = asyncio.run(scenario())
        assert server.bytes_sent < 4096  # the answer was still trickling
    assert took < 30  # the 1.5 s deadline, on a loaded machine; not the 205 s answer
    assert "deadline" in (reporter.stats.last_error or "")
    assert len(reporter.outbox) == 1  # kept for the next try, not lost
