"""Both halves of signed releases together (decisions 084, 085): the keeper's update
machine and check loop (tests/updater/inprocess.py's Rig: real downloads, unpack,
preflight, journal) verifying against THIS control plane's own TUF repository: keys from
`nodekeeper keys create`, releases published with `--targets-key`, snapshot and timestamp
signed by the server, a root rotated with `keys sign-root` and `keys upload-root`.

The attacks themselves are the keeper's tests (tests/updater/test_signed_updates.py,
against a repository that can play a compromised one) and the server's refusals
test_tuf_publish.py's; this proves the two agree on paths, custom fields, hashes and the
root chain."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from nodekeeper.server.tuf_keys import load_signer
from nodekeeper.signing.layout import metadata_url
from nodekeeper.updater.trust import TrustSettings
from tests.support import run_main
from tests.updater.inprocess import PROCESS, TOKEN, Rig, rig_fixture

from .tufrepo import make_keys

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

rig = rig_fixture()


def _publish_signed(rig: Rig, version: str, targets_key: Path) -> None:
    path = rig.artifact(version)
    rig.admin.publish(
        PROCESS,
        version,
        {rig.platform: str(path)},
        load_signer(targets_key),
        trusted_root=(targets_key.parent / "1.root.json").read_bytes(),
    )
    rig.roll_out(version)


def _cli(rig: Rig, *argv: str) -> str:
    env = {"NODEKEEPER_SERVER": rig.cp.url, "NODEKEEPER_ADMIN_TOKEN": TOKEN}
    result = run_main(list(argv), env)
    assert result.returncode == 0, result.stderr
    return result.stdout


async def test_the_keeper_installs_what_this_control_plane_signed(rig: Rig, tmp_path: Path):
    keys = make_keys(tmp_path / "keys")
    # The control plane gets its online keys (an outage and a restart, same port and data).
    rig.cp.stop()
    rig.cp.settings.tuf_online_keys = keys.online
    rig.cp.start()
    _cli(rig, "keys", "upload-root", str(keys.root_file))
    rig.machine_settings = replace(
        rig.machine_settings,
        trust=TrustSettings(
            trusted_root=keys.root_file,
            metadata_url=metadata_url(rig.cp.url),
            metadata_dir=rig.layout.state / "tuf",
        ),
    )
    _publish_signed(rig, "1.0.0", keys.targets_key)
    rig.start()
    await rig.cycles(1)
    assert rig.node.running_version() == "1.0.0", rig.describe()

    # Root v2: root-1 revoked for a new root-4, signed by old and new thresholds.
    new = tmp_path / "new-keys"
    assert (
        run_main(["keys", "new-key", "root-4", "--dir", str(new), "--no-passphrase"]).returncode
        == 0
    )
    v2 = tmp_path / "2.root.json"
    root1_id = _keyid(keys.offline / "root-1.pem")
    _cli(
        rig, "keys", "sign-root", str(v2), "--previous", str(keys.root_file),
        "--revoke", f"root={root1_id[:8]}", "--add", f"root={new / 'root-4.pub'}",
        "--key", str(keys.root_key(1)), "--key", str(keys.root_key(2)),
        "--key", str(new / "root-4.pem"),
    )  # fmt: skip
    _cli(rig, "keys", "upload-root", str(v2))

    # The keeper follows the rotation at its next check and installs the next release.
    _publish_signed(rig, "1.0.1", keys.targets_key)
    await rig.cycles(1)
    assert rig.node.running_version() == "1.0.1", rig.describe()
    history = rig.layout.state / "tuf" / "root_history"
    assert (history / "2.root.json").read_bytes() == v2.read_bytes()


def _keyid(path: Path) -> str:
    return load_signer(path).public_key.keyid
