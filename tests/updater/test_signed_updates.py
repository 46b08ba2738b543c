"""Signed releases (decision 085): the attacks TUF is there for, against the real update
machine and its check loop (tests/updater/inprocess.py: the real control plane, real
downloads, unpack and preflight, the real journal), with real TUF metadata signed by real
ed25519 keys and served by a real HTTP server on loopback (tuf_repository.py, which
plays the honest repository or the compromised server / CDN).

Every refusal is checked the same way (``refused``): the update failed before its
switch, the node still runs the version it ran, nothing new is under versions/, one log
line and one ``verification_failed`` report say which check failed (``check``), and the
error index has it as ``signature_failed``. Each test ends with the honest update going
through, so a refusal is proven to be the attack's and not a broken setup's.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest

from nodekeeper.updater.trust import TrustSettings
from tests.updater.httpserver import FileServer

from .conftest import artifact_for
from .inprocess import PROCESS, Rig, rig_fixture
from .tuf_repository import Repository, expired, key

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

rig = rig_fixture()


@dataclass
class Signed:
    rig: Rig
    repo: Repository
    artifacts: FileServer  # a CDN apart from the metadata (its faults are its own)

    def sign(self, version: str) -> bytes:
        """Publish ``version`` on the control plane and sign it, as a release manager."""
        data = self.rig.publish(version).read_bytes()
        self.repo.sign_release(PROCESS, version, self.rig.platform, data)
        return data

    async def install_first(self) -> None:
        self.sign("1.0.0")
        self.rig.start()
        await self.rig.cycles(1)
        assert self.rig.node.running_version() == "1.0.0", self.rig.describe()

    async def refused(self, check: str, role: str | None, target: str = "1.0.1") -> str:
        """One cycle, in which the update to ``target`` is refused by ``check``."""
        rig = self.rig
        reports_before = len(rig.reports.of("verification_failed"))
        await rig.cycles(1)
        assert rig.node.running_version() == "1.0.0", rig.describe()
        assert rig.node.switches == ["1.0.0"]
        assert rig.installed_versions() == ["1.0.0"]
        assert rig.journal()["current"] == "1.0.0" and rig.journal()["failed"] == []
        new = rig.reports.of("verification_failed")[reports_before:]
        assert len(new) == 1, rig.describe()
        [report] = new
        assert report["check"] == check, report
        assert report.get("role") == role, report
        assert report["target_version"] == target
        entry = rig.entries("signature_failed" if check != "size" else "verification_failed")
        assert entry and entry[-1]["message"] == report["message"]
        lines = [
            r.getMessage()
            for r in rig.log.records
            if r.levelno >= logging.WARNING and f"update of {PROCESS} to {target}" in r.getMessage()
        ]
        assert lines and lines[-1] == report["message"]
        return str(report["message"])

    async def installs(self, version: str) -> None:
        await self.rig.cycles(1)
        assert self.rig.node.running_version() == version, self.rig.describe()
        assert self.rig.journal()["current"] == version


@pytest.fixture
def artifacts() -> Iterator[FileServer]:
    with FileServer() as server:
        yield server


@pytest.fixture
async def signed(rig: Rig, tmp_path: Path, artifacts: FileServer) -> AsyncIterator[Signed]:
    with FileServer() as metadata:
        repo = Repository(metadata)
        rig.machine_settings = replace(
            rig.machine_settings,
            trust=TrustSettings(
                trusted_root=repo.write_trusted_root(tmp_path / "trusted-root.json"),
                metadata_url=repo.url,
                metadata_dir=rig.layout.state / "tuf",
            ),
        )
        yield Signed(rig, repo, artifacts)


async def test_an_artifact_signed_by_no_one_or_by_a_wrong_key_is_not_installed(
    signed: Signed,
) -> None:
    rig, repo = signed.rig, signed.repo
    await signed.install_first()
    # The control plane (or whoever holds its admin token) announces a release that the
    # release manager never signed.
    data = rig.release("1.0.1").read_bytes()
    message = await signed.refused("not_signed", "targets")
    assert "not in the signed targets metadata" in message
    assert f"{PROCESS}/1.0.1/{rig.platform}.zip" in message
    # Signed, but by a key the root does not name for targets.
    repo.add_target(PROCESS, "1.0.1", rig.platform, data)
    repo.publish_targets(signer=key())
    message = await signed.refused("signature", "targets")
    assert "targets was signed by 0/1 keys" in message
    # The release manager signs it: installed.
    repo.publish_targets()
    await signed.installs("1.0.1")


async def test_rollback_freeze_mix_and_match_and_endless_metadata_are_refused(
    signed: Signed,
) -> None:
    rig, repo = signed.rig, signed.repo
    signed.sign("1.0.0")
    old_timestamp = repo.served("timestamp.json")
    old_targets = repo.served(f"{repo.targets.signed.version}.targets.json")
    repo.publish_timestamp()  # the keeper sees a newer timestamp than old_timestamp
    rig.start()
    await rig.cycles(1)
    assert rig.node.running_version() == "1.0.0", rig.describe()
    signed.sign("1.0.1")
    rig.roll_out("1.0.1")

    # Rollback: an older, validly signed timestamp replayed after a newer one was seen.
    repo.serve("timestamp.json", old_timestamp)
    message = await signed.refused("rollback", "timestamp")
    assert "must be >=" in message
    # A stolen timestamp key names an older snapshot.
    repo.publish_timestamp(snapshot_version=1)
    await signed.refused("rollback", "snapshot")
    # Stolen timestamp and snapshot keys name an older targets.
    repo.publish_snapshot(targets_version=1)
    message = await signed.refused("rollback", "targets")
    assert "Expected targets.json version" in message

    # Indefinite freeze: the newest timestamp, expired (a mirror that stopped updating).
    repo.publish_snapshot()
    repo.publish_timestamp(expires=expired())
    message = await signed.refused("expired", "timestamp")
    assert "timestamp.json is expired" in message

    # Mix-and-match: the snapshot names targets vN by hash; vN's file is another
    # (validly signed) targets.
    repo.publish_targets()
    newest = f"{repo.targets.signed.version}.targets.json"
    repo.serve(newest, old_targets)
    await signed.refused("inconsistent", "targets")

    # Endless data: a timestamp far over its bound.
    repo.serve(newest, repo.targets_bytes)
    honest = repo.publish_timestamp()
    repo.serve("timestamp.json", honest + b" " * 10_000)
    message = await signed.refused("too_large", "timestamp")
    assert "exceeding the maximum allowed length" in message

    repo.publish_timestamp()
    await signed.installs("1.0.1")
    # Nothing of the attacks was kept as trusted: the cache holds the honest newest.
    cached = (rig.layout.state / "tuf" / "timestamp.json").read_bytes()
    assert cached == repo.served("timestamp.json")


async def test_compromised_online_keys_or_announcement_cannot_install_another_artifact(
    signed: Signed,
) -> None:
    rig, repo, cdn = signed.rig, signed.repo, signed.artifacts
    await signed.install_first()
    good = rig.artifact("1.0.1").read_bytes()
    altered = good + b"\0"  # still a zip; not the signed bytes

    # The server's online keys (snapshot, timestamp) are stolen: the attacker publishes
    # a targets metadata of their own naming the altered artifact. Without the offline
    # targets key it is signed by no key the root names for targets.
    repo.add_target(PROCESS, "1.0.1", rig.platform, altered)
    forged = repo.publish_targets(signer=key())
    assert b"1.0.1" in forged
    rig.publish_url("1.0.1", cdn.add("/altered.zip", altered))
    rig.roll_out("1.0.1")
    await signed.refused("signature", "targets")

    # The release manager signs the real 1.0.1; the announcement still offers the
    # altered copy (a tampered control plane or CDN): refused before downloading it.
    repo.add_target(PROCESS, "1.0.1", rig.platform, good)
    repo.publish_targets()
    served_before = cdn.bytes_sent("/altered.zip")
    message = await signed.refused("announcement_mismatch", "targets")
    assert f"{len(altered)} bytes" in message and f"{len(good)} bytes" in message
    assert cdn.bytes_sent("/altered.zip") == served_before  # not a byte downloaded

    # Endless data on the artifact: the announcement and the signature agree, the CDN
    # sends more. Cut at the signed length, deleted, never unpacked.
    data = rig.artifact("1.0.3").read_bytes()
    repo.sign_release(PROCESS, "1.0.3", rig.platform, data)
    rig.publish_url("1.0.3", cdn.add("/endless.zip", data))
    rig.roll_out("1.0.3")
    cdn.fault(extra=b"and more" * 1000)
    await signed.refused("size", None, target="1.0.3")
    assert not list(rig.layout.downloads.glob("*1.0.3*"))
    await signed.installs("1.0.3")


async def test_an_announcement_pointing_at_another_signed_artifact_is_refused(
    signed: Signed,
) -> None:
    # The control plane checks what it publishes, so a forged announcement comes from a
    # compromised control plane or a man in the middle: here a server that passes the
    # real control plane's announcement on, rewritten where the test says.
    rig, repo, cdn = signed.rig, signed.repo, signed.artifacts
    with FileServer() as forged:
        rig.server = forged.url
        signed.sign("1.0.0")
        forged.add("/", _announcement(rig))
        rig.start()
        await rig.cycles(1)
        assert rig.node.running_version() == "1.0.0", rig.describe()
        old = rig.artifact("1.0.0").read_bytes()
        new = rig.release("1.0.2").read_bytes()
        # 1.0.2 announced with the bytes of the signed 1.0.0 (a downgrade dressed up).
        old_artifact = artifact_for(cdn.add("/old.zip", old), old).model_dump()
        forged.add("/", _announcement(rig, {_sha256(new): old_artifact}))
        await signed.refused("not_signed", "targets", target="1.0.2")
        # A signed entry under 1.0.2's name whose custom fields say it is 1.0.0 for
        # another platform (a release manager's slip, replayed).
        repo.add_target(
            PROCESS,
            "1.0.2",
            rig.platform,
            old,
            custom={"process": PROCESS, "version": "1.0.0", "platform": "windows_amd64"},
        )
        repo.publish_targets()
        message = await signed.refused("target_mismatch", "targets", target="1.0.2")
        assert "'version': '1.0.0'" in message
        # The real 1.0.2 is signed; the announcement still offers 1.0.0's bytes.
        repo.add_target(PROCESS, "1.0.2", rig.platform, new)
        repo.publish_targets()
        await signed.refused("announcement_mismatch", "targets", target="1.0.2")
        assert cdn.bytes_sent("/old.zip") == 0  # refused before a byte of it
        forged.add("/", _announcement(rig))
        await signed.installs("1.0.2")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _announcement(rig: Rig, swap: dict[str, dict[str, object]] | None = None) -> bytes:
    """The control plane's announcement now, with each artifact whose sha256 is a key of
    ``swap`` replaced by its value."""
    doc = httpx.get(rig.cp.url + "/", timeout=30).json()

    def walk(node: object) -> object:
        if isinstance(node, dict):
            if (swap or {}).get(str(node.get("sha256"))) is not None:
                return swap[str(node["sha256"])]  # type: ignore[index]
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return json.dumps(walk(doc)).encode()


async def test_root_rotation_is_followed_with_the_old_threshold_and_refused_without(
    signed: Signed, tmp_path: Path
) -> None:
    rig, repo = signed.rig, signed.repo
    await signed.install_first()
    # Every root and the targets key rotate; root 2 carries the old root threshold's
    # signatures (2 of 3) and the new one's. The keeper is not reinstalled: its trusted
    # root stays version 1.
    old, new = repo.keys.root, [key(), key(), key()]
    repo.rotate_root(new, sign_with=[*old[:2], *new[:2]], targets_key=key())
    repo.publish_targets()  # re-signed with the new targets key
    signed.sign("1.0.1")
    rig.roll_out("1.0.1")
    await signed.installs("1.0.1")
    assert (tmp_path / "trusted-root.json").read_bytes() == repo.root_bytes[1]
    assert (rig.layout.state / "tuf" / "root_history" / "2.root.json").read_bytes() == (
        repo.root_bytes[2]
    )

    # Root 3 signed only by keys root 2 does not name (a stolen control plane making
    # itself a root): refused, and the keeper keeps trusting root 2.
    intruder = [key(), key(), key()]
    repo.rotate_root(intruder, sign_with=intruder[:2], targets_key=key())
    signed.sign("1.0.2")
    rig.roll_out("1.0.2")
    message = await _refused_from(signed, "1.0.1", "signature", "root", "1.0.2")
    assert "root was signed by 0/2 keys" in message
    cache = rig.layout.state / "tuf"
    assert not (cache / "root_history" / "3.root.json").exists()

    # Someone who can write the state dir plants that root in the cache, as the newest
    # link and as root.json: trust still starts from the shipped root and each cached
    # root must verify against the one before it, so the planted one counts for nothing.
    (cache / "root_history" / "3.root.json").write_bytes(repo.root_bytes[3])
    (cache / "root.json").unlink(missing_ok=True)
    (cache / "root.json").write_bytes(repo.root_bytes[3])
    message = await _refused_from(signed, "1.0.1", "signature", "root", "1.0.2")
    assert "root was signed by 0/2 keys" in message


async def _refused_from(signed: Signed, running: str, check: str, role: str, target: str) -> str:
    """``Signed.refused`` for a node that already moved past 1.0.0."""
    rig = signed.rig
    switches = list(rig.node.switches)
    await rig.cycles(1)
    assert rig.node.running_version() == running and rig.node.switches == switches
    assert target not in rig.installed_versions()
    [report] = rig.reports.of("verification_failed")[-1:]
    assert (report["check"], report["role"], report["target_version"]) == (check, role, target)
    return str(report["message"])
