"""The keeper's own update fetches as the node's machine does: with the configured
download settings, the speed floor included (``SelfUpdater._install`` →
``updater.fetch.fetch_verified``). A real HTTP server on loopback trickles the artifact;
nothing here is faked but the plan, which names that artifact directly."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from nodekeeper.selfupdate.handover import LauncherLink
from nodekeeper.selfupdate.runner import PROCESS, SelfUpdater, SelfUpdateSettings
from nodekeeper.updater.download import DownloadSettings, SpeedFloor, part_path
from nodekeeper.updater.plan import UpdatePlan
from nodekeeper.version.schema import Artifact
from tests.updater.httpserver import FileServer

pytestmark = pytest.mark.timeout(120)

PLATFORM = "linux_amd64"
DATA = os.urandom(1024 * 1024)


class Recorded:
    """The reporter and the error index the runner is given (tested with their own
    modules): what it said to each."""

    def __init__(self) -> None:
        self.reports: list[tuple[str, str]] = []
        self.reasons: list[str] = []

    def report(self, kind: str, message: str, **fields: Any) -> None:
        self.reports.append((kind, message))

    def record(self, source: str, level: int, message: str, **fields: Any) -> None:
        self.reasons.append(fields["reason"])


def test_a_trickling_artifact_is_given_up_at_the_configured_speed_floor(tmp_path: Path) -> None:
    floor = SpeedFloor(bytes_per_second=1_000_000, window=0.5)
    settings = SelfUpdateSettings(
        platform=PLATFORM,
        data_dir=tmp_path,
        download_settings=DownloadSettings(speed_floor=floor),
    )
    said = Recorded()
    link = LauncherLink(tmp_path / "launcher", tmp_path / "launcher-versions", running="1.0.0")
    updater = SelfUpdater(settings, link, lambda: None, reports=said, errors=said, version="1.0.0")
    with FileServer() as files:
        url = files.add("/nodekeeper.zip", DATA)
        # Each chunk arrives well inside the read timeout: only the floor ends it (the
        # default floor, 1 KiB/s over a minute, would let the whole 2.6 s trickle in).
        files.rate = 400_000
        artifact = Artifact(url=url, sha256=hashlib.sha256(DATA).hexdigest(), size=len(DATA))
        plan = UpdatePlan(PROCESS, "9.9.0", PLATFORM, artifact, reason="test")
        assert asyncio.run(updater.run(plan)) == "failed"
    [(kind, message)] = said.reports
    assert kind == "download_failed" and "too slow" in message, message
    assert said.reasons == ["download_failed"]
    # Given up part-way, kept for the next cycle to resume; not remembered as failed.
    kept = part_path(settings.downloads, PROCESS, "9.9.0", PLATFORM).stat().st_size
    assert 0 < kept < len(DATA)
    assert updater.state.failed == frozenset()
