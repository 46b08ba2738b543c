"""`nodekeeper keys` (decision 084) without a server: creating keys (encrypted, 0600, never
into the server's data dir), signing a new root on separate machines, reading expiries.
The server side of a rotation is in test_tuf_publish.py."""

from __future__ import annotations

import stat

import pytest
from tuf.api.metadata import Metadata, Root

from nodekeeper.server.tuf_keys import PASSPHRASE_ENV, KeyFileError, load_signer
from tests.support import run_main


def _create(tmp_path, *extra, env=None):
    return run_main(
        [
            "keys",
            "create",
            "--offline-dir",
            str(tmp_path / "offline"),
            "--online-dir",
            str(tmp_path / "online"),
            *extra,
        ],
        env,
    )


def test_create_writes_encrypted_offline_keys_and_a_root_signed_by_the_threshold(tmp_path):
    result = _create(tmp_path, env={PASSPHRASE_ENV: "correct horse"})
    assert result.returncode == 0, result.stderr
    offline, online = tmp_path / "offline", tmp_path / "online"
    for path in [*offline.glob("*.pem"), *online.glob("*.pem")]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for name in ("root-1", "root-2", "root-3", "targets-1"):
        pem = (offline / f"{name}.pem").read_bytes()
        assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----"), name
    assert (online / "timestamp.pem").read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    # The passphrase opens them; a wrong one is refused with the file's name.
    signer = load_signer(offline / "root-1.pem", lambda _p: b"correct horse")
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        load_signer(offline / "root-1.pem", lambda _p: b"wrong")

    root = Metadata[Root].from_bytes((offline / "1.root.json").read_bytes())
    assert root.signed.consistent_snapshot and root.signed.version == 1
    assert root.signed.roles["root"].threshold == 2 and len(root.signed.roles["root"].keyids) == 3
    assert signer.public_key.keyid in root.signed.roles["root"].keyids
    assert root.signed.get_root_verification_result(None, root.signed_bytes, root.signatures)
    assert root.signed.expires.timestamp() - root.signed.expires.now().timestamp() > 364 * 86400
    assert "ship it to keepers" in result.stdout and "--tuf-online-keys" in result.stdout

    # The commands that sign read the passphrase from the environment (or ask for it).
    v2 = tmp_path / "2.root.json"
    sign = ["keys", "sign-root", str(v2), "--previous", str(offline / "1.root.json")]
    keys = ["--key", str(offline / "root-1.pem"), "--key", str(offline / "root-2.pem")]
    signed = run_main([*sign, *keys], {PASSPHRASE_ENV: "correct horse"})
    assert "complete (old and new thresholds met)" in signed.stdout, signed.stderr
    wrong = run_main([*sign, "--key", str(offline / "root-3.pem")], {PASSPHRASE_ENV: "nope"})
    assert wrong.returncode == 2 and "wrong passphrase" in wrong.stderr


@pytest.mark.parametrize(
    ("extra", "env", "words"),
    [
        ((), {PASSPHRASE_ENV: ""}, "is empty"),
        ((), {PASSPHRASE_ENV: None}, "set NODEKEEPER_KEY_PASSPHRASE"),  # stdin is no terminal
        (("--threshold", "4", "--no-passphrase"), None, "more than --root-keys"),
    ],
)
def test_create_refusals_write_nothing(tmp_path, extra, env, words):
    result = _create(tmp_path, *extra, env=env)
    assert result.returncode == 2 and words in result.stderr
    assert not (tmp_path / "offline").exists() and not (tmp_path / "online").exists()


def test_create_refuses_the_servers_data_dir_and_existing_keys(tmp_path):
    data_dir = tmp_path / "server-data"
    inside = run_main(
        [
            "keys",
            "create",
            "--offline-dir",
            str(data_dir / "keys"),
            "--online-dir",
            str(tmp_path / "online"),
            "--server-data-dir",
            str(data_dir),
            "--no-passphrase",
        ]
    )
    assert inside.returncode == 2 and "inside the control plane's data dir" in inside.stderr
    assert not data_dir.exists()

    assert _create(tmp_path, "--no-passphrase").returncode == 0
    before = (tmp_path / "offline" / "root-1.pem").read_bytes()
    again = _create(tmp_path, "--no-passphrase")
    assert again.returncode == 2 and "never overwritten" in again.stderr
    assert (tmp_path / "offline" / "root-1.pem").read_bytes() == before


def test_sign_root_on_separate_machines_says_which_keys_are_missing(tmp_path):
    assert _create(tmp_path, "--no-passphrase").returncode == 0
    offline = tmp_path / "offline"
    v1 = offline / "1.root.json"
    v2 = tmp_path / "2.root.json"
    root1 = Metadata[Root].from_bytes(v1.read_bytes()).signed
    ids = root1.roles["root"].keyids

    # Machine A makes v2 (threshold 3 of the same 3 keys) and signs with root-1.
    made = run_main(
        ["keys", "sign-root", str(v2), "--previous", str(v1), "--threshold", "root=3",
         "--key", str(offline / "root-1.pem")]
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "NOT complete" in made.stdout
    assert "the previous root's keys: 1 of 2 signed, 1 more needed" in made.stdout
    assert "the new root's keys: 1 of 3 signed, 2 more needed" in made.stdout
    assert ids[0][:8] not in made.stdout.split("needed from")[1]  # signed already
    # Changing a file that has signatures is refused (it would void them).
    changed = run_main(
        ["keys", "sign-root", str(v2), "--previous", str(v1), "--threshold", "root=2"]
    )
    assert changed.returncode == 2 and "would void its signatures" in changed.stderr
    # A key that is no root key is refused, and nothing is written.
    before = v2.read_bytes()
    sign = ["keys", "sign-root", str(v2), "--previous", str(v1), "--key"]
    stranger = run_main([*sign, str(offline / "targets-1.pem")])
    assert stranger.returncode == 2 and "is not a root key" in stranger.stderr
    assert v2.read_bytes() == before
    # Machines B and C add theirs.
    for n in (2, 3):
        assert run_main([*sign, str(offline / f"root-{n}.pem")]).returncode == 0
    done = run_main(["keys", "sign-root", str(v2), "--previous", str(v1)])
    assert "complete (old and new thresholds met)" in done.stdout
    new = Metadata[Root].from_bytes(v2.read_bytes())
    assert new.signed.version == 2 and new.signed.roles["root"].threshold == 3
    assert new.signed.get_root_verification_result(root1, new.signed_bytes, new.signatures)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--revoke", "root=abc"], "no single root key starts with it"),
        (["--add", "nosuchrole=x.pub"], "ROLE=VALUE with ROLE one of"),
        (["--add", "root=missing.pub"], "cannot read key file"),
        (["--threshold", "targets=2"], "must be from 1 to the role's 1 keys"),
    ],
)
def test_sign_root_refuses_bad_changes(tmp_path, argv, words):
    assert _create(tmp_path, "--no-passphrase").returncode == 0
    v1 = tmp_path / "offline" / "1.root.json"
    v2 = tmp_path / "2.root.json"
    result = run_main(["keys", "sign-root", str(v2), "--previous", str(v1), *argv])
    assert result.returncode == 2 and words in result.stderr, result.stderr
    assert not v2.exists()


def test_expiries_of_files_mark_what_is_close(tmp_path):
    assert _create(tmp_path, "--no-passphrase").returncode == 0
    v1 = tmp_path / "offline" / "1.root.json"
    fine = run_main(["keys", "expiries", "--file", str(v1)])
    assert fine.returncode == 0 and fine.stdout.startswith("  root       v1")
    # A root 20 days from expiry (made with the API: the CLI always gives a year).
    md = Metadata[Root].from_bytes(v1.read_bytes())
    md.signed.expires = md.signed.expires.replace(microsecond=0) - __import__("datetime").timedelta(
        days=345
    )
    close = tmp_path / "close.root.json"
    close.write_bytes(md.to_bytes())
    marked = run_main(["keys", "expiries", "--file", str(close)])
    assert marked.stdout.startswith("! root")
    assert "keys sign-root" in marked.stdout
    missing = run_main(["keys", "expiries"], {"NODEKEEPER_SERVER": None})
    assert missing.returncode == 2 and "--server" in missing.stderr
