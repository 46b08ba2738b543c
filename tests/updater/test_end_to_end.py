"""The whole fetch → install path against a real `nodekeeper server run` process:
announcement (with its ETag), rollout decision, download with a resume through the
control plane's Range support, verification, unpack and preflight of a release zip."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from nodekeeper.server.client import AdminClient
from nodekeeper.updater.checker import fetch_announcement
from nodekeeper.updater.download import DownloadSettings, download, make_client, part_path
from nodekeeper.updater.identity import read_node_id
from nodekeeper.updater.plan import UpdatePlan, plan_update
from nodekeeper.updater.preflight import preflight
from nodekeeper.updater.unpack import unpack
from nodekeeper.updater.verify import verify_download
from nodekeeper.version.platforms import this_platform
from storagenode.identity import new_identity_pem
from tests.artifacts import build_good
from tests.server.controlplane import TOKEN, ControlPlane


@pytest.fixture
def control_plane(tmp_path: Path):
    with ControlPlane(tmp_path / "cp") as cp:
        yield cp


def test_install_the_minimum_then_the_rollout_target(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    platform = this_platform()
    admin = AdminClient(control_plane.url, TOKEN)
    admin.publish("storagenode", "1.0.0", {platform: str(build_good("1.0.0", tmp_path / "r1"))})
    config_dir = tmp_path / "node"
    config_dir.mkdir()
    (config_dir / "identity.key").write_bytes(new_identity_pem()[0])
    node_id = read_node_id(config_dir)
    downloads, versions = tmp_path / "data" / "downloads", tmp_path / "data" / "versions"

    with make_client(DownloadSettings(read_timeout=10)) as client:
        fetched = fetch_announcement(client, control_plane.url + "/")
        plan = plan_update(fetched.announcement, "storagenode", "0.0.0", node_id, platform)
        assert isinstance(plan, UpdatePlan) and plan.version == "1.0.0"
        installed = install(client, plan, downloads, versions, resume_from_half=True)
        assert preflight(installed, plan.version) == "1.0.0"

        # Nothing changed: a 304, the same document.
        again = fetch_announcement(client, control_plane.url + "/", fetched)
        assert again.not_modified

        admin.publish("storagenode", "1.1.0", {platform: str(build_good("1.1.0", tmp_path / "r2"))})
        control_plane.cli("rollout", "start", "storagenode", "1.1.0")
        control_plane.cli("rollout", "set", "storagenode", "100")
        plan = wait_for_plan(client, control_plane.url + "/", fetched, node_id, platform)
        assert plan.version == "1.1.0"
        installed = install(client, plan, downloads, versions)
        assert preflight(installed, plan.version) == "1.1.0"
    assert sorted(p.name for p in (versions / "storagenode").iterdir()) == ["1.0.0", "1.1.0"]
    assert sorted(p.name for p in downloads.iterdir()) == [
        f"storagenode-1.0.0-{platform}.zip",
        f"storagenode-1.1.0-{platform}.zip",
    ]


def install(client, plan: UpdatePlan, downloads: Path, versions: Path, resume_from_half=False):
    part = part_path(downloads, plan.process, plan.version, plan.platform)
    if resume_from_half:
        # An earlier attempt got half-way: the control plane's static mount resumes it.
        whole = client.get(plan.artifact.url).content
        part.parent.mkdir(parents=True, exist_ok=True)
        part.write_bytes(whole[: len(whole) // 2])
    result = download(client, plan.artifact, part)
    if resume_from_half:
        assert result.resumed_from == plan.artifact.size // 2
        assert result.fetched == plan.artifact.size - result.resumed_from
    zip_path = verify_download(result, plan.artifact)
    return unpack(zip_path, versions, plan.process, plan.version)


def wait_for_plan(client, url, previous, node_id, platform) -> UpdatePlan:
    """The control plane re-renders within its poll interval (0.1 s in tests)."""
    deadline = time.monotonic() + 10
    while True:
        fetched = fetch_announcement(client, url, previous)
        plan = plan_update(fetched.announcement, "storagenode", "1.0.0", node_id, platform)
        if isinstance(plan, UpdatePlan) or time.monotonic() > deadline:
            assert isinstance(plan, UpdatePlan), plan
            return plan
        previous = fetched
        time.sleep(0.1)
