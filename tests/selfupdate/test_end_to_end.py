"""End to end: a control plane announces a new ``nodekeeper``; the keeper, running under
the launcher, downloads, verifies, installs and preflights it, hands over, and the
launcher commits it after probation. Real processes throughout."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import tomli_w

from nodekeeper.launcher.decide import State
from nodekeeper.server.client import AdminClient
from nodekeeper.version.platforms import this_platform
from tests.selfupdate.conftest import PROBATION, LauncherProcess, make_site, wait_for
from tests.selfupdate.keepers import build_keeper, install
from tests.server.controlplane import TOKEN, ControlPlane

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]


def test_control_plane_announces_a_keeper_and_it_updates_itself(
    tmp_path: Path, launchers: Callable[..., LauncherProcess]
) -> None:
    site = make_site(tmp_path)
    platform = this_platform()
    old_zip = build_keeper("good", "1.0.0", tmp_path / "releases")
    new_zip = build_keeper("good", "1.1.0", tmp_path / "releases")
    install(old_zip, site.versions_dir)  # what the installer put there
    site.set_state(State(current="1.0.0"))

    with ControlPlane(tmp_path / "cp") as cp:
        admin = AdminClient(cp.url, TOKEN)
        admin.publish("nodekeeper", "1.0.0", {platform: str(old_zip)})
        config = site.config.read_text() + tomli_w.dumps(
            {
                "update": {
                    "server": cp.url,
                    "interval_seconds": 1.0,
                    "jitter": 0.1,
                    "first_check": "now",
                    "backoff_initial_seconds": 0.5,
                    "backoff_max_seconds": 2.0,
                }
            }
        )
        site.config.write_text(config)
        launcher = launchers(site)
        launcher.wait_running("1.0.0")

        admin.publish("nodekeeper", "1.1.0", {platform: str(new_zip)})
        cp.cli("minimum", "set", "nodekeeper", "1.1.0")
        launcher.wait_running("1.1.0", timeout=60)
        state = wait_for(
            lambda: site.state().current == "1.1.0" and site.state(),
            3 * PROBATION,
            f"the commit\n{launcher.log}",
        )
        assert (state.previous, state.pending, state.failed) == ("1.0.0", None, ())
        # The keeper went through the updater's own steps (download, verify, unpack,
        # preflight) and handed over; both installs stay (current and previous), the
        # download was cleaned up by the new keeper's sweep.
        keeper_log = (site.data_dir / "logs" / "keeper.log").read_text()
        assert "updating the keeper 1.0.0 → 1.1.0" in keeper_log
        assert "handing over to keeper 1.1.0" in keeper_log
        assert sorted(p.name for p in site.versions_dir.iterdir()) == ["1.0.0", "1.1.0"]
        downloads = site.data_dir / "downloads" / "nodekeeper"
        wait_for(lambda: not any(downloads.iterdir()), 10, "the download swept")
        # The new keeper reports the commit on its next cycle (queued: the node is not
        # set up, so there is no identity to sign with yet).
        queue = site.data_dir / "state" / "reports" / "queue"

        def committed_report() -> bool:
            reports = [json.loads(p.read_text())["report"] for p in queue.glob("*.json")]
            return any(
                r["kind"] == "update_succeeded"
                and r["process"] == "nodekeeper"
                and r["target_version"] == "1.1.0"
                for r in reports
            )

        wait_for(committed_report, 15, "the update_succeeded report")
        # 1.1.0 is what it announces as current: no second hand-over.
        assert launcher.log.count("self-update: starting keeper") == 1


def test_a_keeper_release_that_fails_preflight_is_never_handed_over(
    tmp_path: Path, launchers: Callable[..., LauncherProcess]
) -> None:
    """The release cannot say its version: the keeper stays up on 1.0.0 (the node is never
    stopped for it), reports the failure, and does not download it again next cycle."""
    site = make_site(tmp_path)
    platform = this_platform()
    old_zip = build_keeper("good", "1.0.0", tmp_path / "releases")
    broken_zip = build_keeper("broken_version", "1.1.0", tmp_path / "releases")
    install(old_zip, site.versions_dir)
    site.set_state(State(current="1.0.0"))

    with ControlPlane(tmp_path / "cp") as cp:
        admin = AdminClient(cp.url, TOKEN)
        admin.publish("nodekeeper", "1.0.0", {platform: str(old_zip)})
        admin.publish("nodekeeper", "1.1.0", {platform: str(broken_zip)})
        cp.cli("minimum", "set", "nodekeeper", "1.1.0")
        config = site.config.read_text() + tomli_w.dumps(
            {
                "update": {
                    "server": cp.url,
                    "interval_seconds": 0.5,
                    "jitter": 0.1,
                    "first_check": "now",
                }
            }
        )
        site.config.write_text(config)
        launcher = launchers(site)
        keeper = launcher.wait_running("1.0.0")
        keeper_log = site.data_dir / "logs" / "keeper.log"
        wait_for(
            lambda: (
                "failed before; waiting for a newer" in keeper_log.read_text()
                or "failed on this node before" in keeper_log.read_text()
            ),
            30,
            "the failed version skipped on a later cycle",
        )
        text = keeper_log.read_text()
        assert text.count("updating the keeper 1.0.0 → 1.1.0") == 1
        assert "keeper self-update to 1.1.0 failed" in text
        assert launcher.keeper() is not None and launcher.keeper().pid == keeper.pid
        assert "self-update: starting" not in launcher.log  # the launcher never heard of it
        assert site.state() == State(current="1.0.0")
        assert not (site.versions_dir / "1.1.0").exists()
