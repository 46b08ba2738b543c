"""Signed releases end to end (decision 085): a real keeper process (`python -m
nodekeeper.keeper` with ``[update] trusted_root``), the real control plane process, the
reference node, and TUF metadata signed with real keys on a loopback server. The keeper
installs a signed release, refuses an unsigned one (the node untouched, the report at the
control plane saying which check), and installs it once it is signed."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodekeeper.server.tuf_keys import load_signer
from tests.server.tufrepo import make_keys
from tests.support import run_main

from .httpserver import FileServer
from .inprocess import PROCESS
from .lab import Lab
from .tuf_repository import Repository

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def test_a_keeper_process_installs_only_signed_releases(lab: Lab, tmp_path: Path) -> None:
    with FileServer() as metadata:
        repo = Repository(metadata)
        root = repo.write_trusted_root(tmp_path / "trusted-root.json")
        first = lab.publish("1.0.0")
        repo.sign_release(PROCESS, "1.0.0", lab.platform, first.read_bytes())
        lab.start_keeper(update={"trusted_root": str(root), "tuf_metadata_url": repo.url})
        lab.wait_running("1.0.0", timeout=90)
        assert (lab.status() or {}).get("signed_releases") is True

        unsigned = lab.release("1.0.1")
        refusal = lab.wait(
            lambda: [
                r
                for r in lab.reports()
                if r["kind"] == "verification_failed" and r["target_version"] == "1.0.1"
            ],
            timeout=60,
            what="a verification_failed report for 1.0.1",
        )[0]
        assert refusal["details"]["check"] == "not_signed", refusal
        assert "not in the signed targets metadata" in refusal["message"]
        assert lab.entries("signature_failed")
        assert "signed releases:" in lab.log_text()
        status = lab.status() or {}
        assert status["update"]["current"] == "1.0.0"
        assert sorted(p.name for p in (lab.data_dir / "versions" / PROCESS).iterdir()) == ["1.0.0"]

        repo.sign_release(PROCESS, "1.0.1", lab.platform, unsigned.read_bytes())
        lab.wait_running("1.0.1", timeout=90)
    assert (lab.data_dir / "state" / "tuf" / "root_history" / "1.root.json").exists()


def test_signed_releases_from_the_control_plane_with_a_rotated_targets_key(
    lab: Lab, tmp_path: Path
) -> None:
    """The whole chain as operators run it, every part real: keys from `nodekeeper keys
    create`, the control plane holding the online keys, releases published with `release
    publish --targets-key`, a keeper process trusting the root it was shipped. Then the
    release manager's key is replaced (as after its theft): a new root revokes it, the old
    key can no longer publish, and the keeper follows the new root and installs the next
    release with no reinstall."""
    keys = make_keys(tmp_path / "keys")
    lab.cp.stop()  # the same control plane, restarted with its online keys
    lab.cp.extra_args = [*lab.cp.extra_args, "--tuf-online-keys", str(keys.online)]
    lab.cp.start()
    env = {name: value for name, value in lab.cp.env_changes().items() if value is not None}

    def cli(*argv: str, ok: bool = True) -> str:
        result = run_main(list(argv), env)
        assert (result.returncode == 0) == ok, (argv, result.stdout, result.stderr)
        return result.stdout + result.stderr

    def publish(version: str, targets_key: Path, ok: bool = True) -> str:
        zip_path = lab.artifact(version)
        artifact = f"{lab.platform}={zip_path}"
        # The release manager trusts root 1 (from `keys create`) and follows the chain.
        out = cli("release", "publish", PROCESS, version, "--artifact", artifact,
                  "--targets-key", str(targets_key), "--trusted-root", str(keys.root_file),
                  ok=ok)  # fmt: skip
        if ok:
            lab.roll_out(version)
        return out

    cli("keys", "upload-root", str(keys.root_file))
    publish("1.0.0", keys.targets_key)
    lab.start_keeper(update={"trusted_root": str(keys.root_file)})  # metadata: the server's
    lab.wait_running("1.0.0", timeout=90)
    assert (lab.status() or {}).get("signed_releases") is True

    # The targets key is replaced: root 2 (signed by 2 of the 3 root keys, which still
    # hold the root role) revokes it and names a new one; the targets are re-signed.
    new = tmp_path / "new-keys"
    cli("keys", "new-key", "targets-2", "--dir", str(new), "--no-passphrase")
    old_id = load_signer(keys.targets_key).public_key.keyid
    root2 = tmp_path / "2.root.json"
    cli("keys", "sign-root", str(root2), "--previous", str(keys.root_file),
        "--revoke", f"targets={old_id[:8]}", "--add", f"targets={new / 'targets-2.pub'}",
        "--key", str(keys.root_key(1)), "--key", str(keys.root_key(2)))  # fmt: skip
    cli("keys", "upload-root", str(root2))
    # The new key re-signs what the old one signed, listed for the release manager.
    resigned = cli(
        "keys", "sign-targets", "--targets-key", str(new / "targets-2.pem"),
        "--trusted-root", str(keys.root_file),
    )  # fmt: skip
    assert "signed under root v1 by a key root v2 no longer trusts" in resigned, resigned
    assert f"{PROCESS}/1.0.0/{lab.platform}.zip" in resigned, resigned

    # The stolen key publishes nothing any more; the new one does, and the keeper, still
    # shipped with root 1, follows root 2 and installs it.
    refused = publish("1.0.1", keys.targets_key, ok=False)
    assert f"the key {old_id[:8]}" in refused and "is not a targets key" in refused, refused
    publish("1.0.1", new / "targets-2.pem")
    lab.wait_running("1.0.1", timeout=90)
    history = lab.data_dir / "state" / "tuf" / "root_history"
    assert (history / "2.root.json").read_bytes() == root2.read_bytes()
    assert not [r for r in lab.reports() if r["kind"] == "verification_failed"]
