"""The keeper's own update goes through the same signature check as the node's (decision
085): an unsigned keeper release, or one whose announcement is not the signed artifact, is
refused before a byte is downloaded, and the running keeper stays. Real TUF metadata on a
loopback server (tests/updater/tuf_repository.py); the plan names the artifact directly,
as in test_runner_fetch.py."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from nodekeeper.selfupdate.handover import LauncherLink
from nodekeeper.selfupdate.runner import PROCESS, SelfUpdater, SelfUpdateSettings
from nodekeeper.updater.plan import UpdatePlan
from nodekeeper.updater.trust import TrustSettings
from nodekeeper.version.schema import Artifact
from tests.updater.httpserver import FileServer
from tests.updater.tuf_repository import Repository

pytestmark = pytest.mark.timeout(60)

PLATFORM = "linux_amd64"
DATA = os.urandom(64 * 1024)


class Recorded:
    def __init__(self) -> None:
        self.reports: list[dict[str, Any]] = []
        self.reasons: list[str] = []

    def report(self, kind: str, message: str, **fields: Any) -> None:
        self.reports.append({"kind": kind, "message": message, **fields})

    def record(self, source: str, level: int, message: str, **fields: Any) -> None:
        self.reasons.append(fields["reason"])


def test_an_unsigned_or_altered_keeper_release_is_refused(tmp_path: Path) -> None:
    said = Recorded()
    link = LauncherLink(tmp_path / "launcher", tmp_path / "launcher-versions", running="1.0.0")
    with FileServer() as files:
        repo = Repository(files)
        settings = SelfUpdateSettings(
            platform=PLATFORM,
            data_dir=tmp_path,
            trust=TrustSettings(
                repo.write_trusted_root(tmp_path / "trusted-root.json"),
                repo.url,
                tmp_path / "state" / "tuf",
            ),
        )
        updater = SelfUpdater(
            settings, link, lambda: None, reports=said, errors=said, version="1.0.0"
        )
        url = files.add("/nodekeeper.zip", DATA)
        artifact = Artifact(url=url, sha256=hashlib.sha256(DATA).hexdigest(), size=len(DATA))
        plan = UpdatePlan(PROCESS, "9.9.0", PLATFORM, artifact, reason="test")
        assert asyncio.run(updater.run(plan)) == "failed"
        # Signed, but the announcement offers other bytes than the signed ones.
        repo.sign_release(PROCESS, "9.9.0", PLATFORM, DATA[::-1])
        assert asyncio.run(updater.run(plan)) == "failed"
        assert files.bytes_sent("/nodekeeper.zip") == 0  # refused before downloading
    assert [(r["kind"], r["check"], r["target_version"]) for r in said.reports] == [
        ("verification_failed", "not_signed", "9.9.0"),
        ("verification_failed", "announcement_mismatch", "9.9.0"),
    ]
    assert said.reasons == ["signature_failed", "signature_failed"]
    message = said.reports[0]["message"]
    assert message.startswith("keeper self-update to 9.9.0 failed: signed releases: nodekeeper")
    assert message.endswith("staying on 1.0.0")
    assert updater.handed_over is None and updater.state.failed == frozenset()
    assert not (tmp_path / "versions" / PROCESS).exists()
    assert not any(settings.downloads.iterdir())
