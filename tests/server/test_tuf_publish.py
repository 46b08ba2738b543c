"""The control plane as a TUF repository (decision 084), end to end over loopback: real
keys from `nodekeeper keys create`, a real server holding the online keys, signed
publishes through the CLI, and `tuf.ngclient.Updater` as a keeper would use it.

The attack of issue 15 these cover: a compromised control-plane admin token cannot
publish an installable release without the targets key."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from tuf.api.metadata import Metadata, Root, TargetFile, Targets

from nodekeeper.server.tuf_keys import load_signer
from nodekeeper.signing.layout import target_custom, target_path
from tests.support import run_main

from .releases import release_zip
from .test_api import state
from .tufrepo import Keys, make_keys, signing_server, updater


@pytest.fixture
def keys(tmp_path) -> Keys:
    return make_keys(tmp_path / "keys")


@pytest.fixture
def cp(tmp_path, keys):
    with signing_server(tmp_path / "cp", keys) as server:
        result = server.cli("keys", "upload-root", str(keys.root_file))
        assert "TUF root v1" in result.stdout
        yield server


def _zip(tmp_path, version: str) -> tuple[str, str]:
    path = tmp_path / f"sn_{version}.zip"
    sha = release_zip(path, version)
    return str(path), sha


def _publish(cp, tmp_path, version, *extra, check=True):
    path, _ = _zip(tmp_path, version)
    return cp.cli(
        "release",
        "publish",
        "storagenode",
        version,
        "--artifact",
        f"linux_amd64={path}",
        *extra,
        check=check,
    )


def test_signed_publish_is_served_and_found_by_a_keeper(cp, keys, tmp_path):
    path, sha = _zip(tmp_path, "1.0.0")
    result = cp.cli(
        "release",
        "publish",
        "storagenode",
        "1.0.0",
        "--artifact",
        f"linux_amd64={path}",
        "--targets-key",
        str(keys.targets_key),
    )
    assert "(signed: targets v1)" in result.stdout

    u = updater(cp, keys, tmp_path / "keeper")
    info = u.get_targetinfo(target_path("storagenode", "1.0.0", "linux_amd64"))
    assert info is not None
    assert info.length == (tmp_path / "sn_1.0.0.zip").stat().st_size
    assert info.hashes == {"sha256": sha}
    assert info.custom == target_custom("storagenode", "1.0.0", "linux_amd64")

    # The served artifact is the signed one, byte for byte.
    served = httpx.get(f"{cp.url}/download/storagenode/1.0.0/linux/amd64", follow_redirects=True)
    info.verify_length_and_hashes(served.content)

    # A second release: the next targets keeps the first's entry.
    _publish(cp, tmp_path, "1.1.0", "--targets-key", str(keys.targets_key))
    u = updater(cp, keys, tmp_path / "keeper")
    assert u.get_targetinfo(target_path("storagenode", "1.0.0", "linux_amd64")) is not None
    assert u.get_targetinfo(target_path("storagenode", "1.1.0", "linux_amd64")) is not None


def test_metadata_is_served_as_stored_with_cache_headers(cp, keys, tmp_path):
    _publish(cp, tmp_path, "1.0.0", "--targets-key", str(keys.targets_key))
    base = f"{cp.url}/tuf/metadata/"
    root = httpx.get(base + "1.root.json")
    assert root.status_code == 200 and root.headers["content-type"] == "application/json"
    assert root.content == keys.root_file.read_bytes()  # the uploaded bytes, exactly
    assert "max-age" in root.headers["cache-control"]

    timestamp = httpx.get(base + "timestamp.json")
    assert timestamp.headers["cache-control"] == "no-cache"
    ts = Metadata.from_bytes(timestamp.content)
    snap_bytes = httpx.get(base + f"{ts.signed.snapshot_meta.version}.snapshot.json").content
    # The timestamp names the snapshot by length and sha256 of the served bytes.
    ts.signed.snapshot_meta.verify_length_and_hashes(snap_bytes)
    snap = Metadata.from_bytes(snap_bytes)
    targets_meta = snap.signed.meta["targets.json"]
    targets_bytes = httpx.get(base + f"{targets_meta.version}.targets.json").content
    targets_meta.verify_length_and_hashes(targets_bytes)

    for name in (
        "2.root.json",
        "root.json",
        "0.targets.json",
        "9.snapshot.json",
        "x.json",
        "timestamp.json.bak",
    ):
        missing = httpx.get(base + name)
        assert missing.status_code == 404, name
        # A cached 404 for the next root would hide a rotation from keepers.
        assert missing.headers.get("cache-control") == "no-cache", name


def _versions(cp) -> dict[str, int]:
    with cp.admin() as c:
        roles = c.get("/v1/admin/tuf").json()["roles"]
    return {role: r.get("version") for role, r in roles.items()}


def _refused_attempt(cp, tmp_path, version, *extra):
    before = state(cp)
    tuf_before = _versions(cp)
    result = _publish(cp, tmp_path, version, *extra, check=False)
    assert result.returncode != 0
    assert state(cp) == before  # no release, no audit row, no artifact kept
    assert not list((cp.data_dir / "uploads").iterdir())  # nor the uploads
    assert _versions(cp) == tuf_before
    return result.stderr


def test_a_stolen_admin_token_cannot_publish_an_installable_release(cp, keys, tmp_path):
    _publish(cp, tmp_path, "1.0.0", "--targets-key", str(keys.targets_key))
    targets_keyid = (
        Metadata[Root].from_bytes(keys.root_file.read_bytes()).signed.roles["targets"].keyids[0]
    )

    # Without the key: the CLI says which key is needed, before uploading anything.
    said = _refused_attempt(cp, tmp_path, "1.1.0")
    assert "--targets-key" in said and targets_keyid[:8] in said

    # With some other key: refused by the CLI, which checks the root's targets keys
    # (trusting the right root: with the other key's own root beside it, it would stop
    # earlier, at a server whose root is not that one)...
    other = make_keys(tmp_path / "other")
    said = _refused_attempt(
        cp, tmp_path, "1.1.0", "--targets-key", str(other.targets_key),
        "--trusted-root", str(keys.root_file),
    )  # fmt: skip
    assert "is not a targets key" in said and targets_keyid[:8] in said
    said = _refused_attempt(cp, tmp_path, "1.1.0", "--targets-key", str(other.targets_key))
    assert "1.root.json is not your trusted root" in said

    # ...and by the server, for a client that skips the checks: the raw admin API.
    path, sha = _zip(tmp_path, "1.1.0")
    with cp.admin() as c:
        upload = c.put("/v1/admin/uploads", content=Path(path).read_bytes()).json()
        spec = {"platform": "linux_amd64", "upload_id": upload["upload_id"]}
        unsigned = c.post(
            "/v1/admin/releases",
            json={"process": "storagenode", "version": "1.1.0", "artifacts": [spec]},
        )
        assert unsigned.status_code == 422
        assert targets_keyid[:8] in unsigned.json()["error"]
        assert "--targets-key" in unsigned.json()["error"]
        # The upload was discarded with the refusal; a forged targets needs a new one.
        upload = c.put("/v1/admin/uploads", content=Path(path).read_bytes()).json()
        spec = {"platform": "linux_amd64", "upload_id": upload["upload_id"]}
        forged = _targets_signed_by(other.targets_key, 2, "1.1.0", sha, path)
        refused = c.post(
            "/v1/admin/releases",
            json={
                "process": "storagenode",
                "version": "1.1.0",
                "artifacts": [spec],
                "targets": forged,
            },
        )
        assert refused.status_code == 422
        assert "not by the targets key 1 of [" in refused.json()["error"]
        assert c.get("/v1/admin/status").json()[0]["versions"] == ["1.0.0"]

    # A keeper with the trusted root finds no such target.
    u = updater(cp, keys, tmp_path / "keeper")
    assert u.get_targetinfo(target_path("storagenode", "1.1.0", "linux_amd64")) is None
    assert u.get_targetinfo(target_path("storagenode", "1.0.0", "linux_amd64")) is not None


def _targets_signed_by(key_file, version: int, release: str, sha: str, path) -> str:
    """Targets ``version`` with a correct entry for ``release``, signed by ``key_file``."""
    signer = load_signer(key_file)
    md = Metadata(Targets(version=version))
    tf = TargetFile(
        Path(path).stat().st_size,
        {"sha256": sha},
        target_path("storagenode", release, "linux_amd64"),
    )
    tf.unrecognized_fields["custom"] = target_custom("storagenode", release, "linux_amd64")
    md.signed.targets[tf.path] = tf
    md.sign(signer)
    return md.to_bytes().decode()


def test_signed_entries_must_match_the_artifacts_and_the_version_must_be_next(cp, keys, tmp_path):
    _publish(cp, tmp_path, "1.0.0", "--targets-key", str(keys.targets_key))
    signer = load_signer(keys.targets_key)
    path, sha = _zip(tmp_path, "1.1.0")
    size = (tmp_path / "sn_1.1.0.zip").stat().st_size
    current = Metadata[Targets].from_bytes(
        httpx.get(f"{cp.url}/tuf/metadata/1.targets.json").content
    )

    def attempt(version: int, length: int, digest: str, custom: dict) -> httpx.Response:
        md = Metadata[Targets].from_bytes(current.to_bytes())
        md.signed.version = version
        tf = TargetFile(
            length, {"sha256": digest}, target_path("storagenode", "1.1.0", "linux_amd64")
        )
        tf.unrecognized_fields["custom"] = custom
        md.signed.targets[tf.path] = tf
        md.sign(signer)  # replaces the old signature: the new bytes, the right key
        with cp.admin() as c:
            upload = c.put("/v1/admin/uploads", content=Path(path).read_bytes()).json()
            return c.post(
                "/v1/admin/releases",
                json={
                    "process": "storagenode",
                    "version": "1.1.0",
                    "artifacts": [{"platform": "linux_amd64", "upload_id": upload["upload_id"]}],
                    "targets": md.to_bytes().decode(),
                },
            )

    right = target_custom("storagenode", "1.1.0", "linux_amd64")
    wrong_custom = target_custom("storagenode", "1.0.0", "linux_amd64")
    for version, length, digest, custom, status, words in (
        (2, size + 1, sha, right, 422, "length"),
        (2, size, "00" * 32, right, 422, "hashes"),
        (2, size, sha, wrong_custom, 422, "custom"),
        (1, size, sha, right, 409, "not the next version"),
        (3, size, sha, right, 409, "not the next version"),
    ):
        before = state(cp)
        response = attempt(version, length, digest, custom)
        assert response.status_code == status, response.text
        assert words in response.json()["error"]
        assert state(cp) == before
    assert attempt(2, size, sha, right).status_code == 201


def test_remote_artifacts_are_signed_too(cp, keys, tmp_path, static_host):
    sha = release_zip(static_host.root / "sn.zip", "1.0.0")
    result = cp.cli(
        "release",
        "publish",
        "storagenode",
        "1.0.0",
        "--artifact",
        f"windows_amd64={static_host.url}/sn.zip",
        "--targets-key",
        str(keys.targets_key),
    )
    assert "signed" in result.stdout
    info = updater(cp, keys, tmp_path / "keeper").get_targetinfo(
        target_path("storagenode", "1.0.0", "windows_amd64")
    )
    assert info is not None and info.hashes == {"sha256": sha}


def test_a_server_without_a_root_publishes_unsigned_as_before(tmp_path, keys):
    with signing_server(tmp_path / "cp", keys) as cp:
        _publish(cp, tmp_path, "1.0.0")
        assert httpx.get(f"{cp.url}/tuf/metadata/timestamp.json").status_code == 404
        said = _publish(cp, tmp_path, "1.1.0", "--targets-key", str(keys.targets_key), check=False)
        assert said.returncode == 2 and "has no TUF root" in said.stderr


def test_a_root_without_the_online_keys_starts_and_says_what_is_missing(tmp_path, keys):
    data_dir = tmp_path / "cp"
    with signing_server(data_dir, keys) as cp:
        cp.cli("keys", "upload-root", str(keys.root_file))
        _publish(cp, tmp_path, "1.0.0", "--targets-key", str(keys.targets_key))
    # The same data without --tuf-online-keys: it serves, says why it cannot sign...
    from .controlplane import ControlPlane

    with ControlPlane(data_dir) as cp:
        log = cp.log_path.read_text()
        assert "cannot sign snapshot and timestamp" in log and "--tuf-online-keys" in log
        assert httpx.get(f"{cp.url}/tuf/metadata/timestamp.json").status_code == 200
        with cp.admin() as c:
            problems = c.get("/v1/admin/tuf").json()["problems"]
        assert any("--tuf-online-keys" in p for p in problems)
        # ...and refuses to publish (503) rather than sign half a release.
        before = state(cp)
        result = _publish(
            cp, tmp_path, "1.1.0", "--targets-key", str(keys.targets_key), check=False
        )
        assert result.returncode == 1 and "HTTP 503" in result.stderr
        assert "--tuf-online-keys" in result.stderr
        assert state(cp) == before


def test_root_rotation_end_to_end(cp, keys, tmp_path):
    """Root v2 revokes root-1 and adds root-4 (threshold stays 2 of 3) and rotates the
    timestamp key; the server takes it only once complete and re-signs the timestamp with
    the new key; a keeper bootstrapped with 1.root.json follows to v2."""
    _publish(cp, tmp_path, "1.0.0", "--targets-key", str(keys.targets_key))
    u = updater(cp, keys, tmp_path / "keeper")  # a keeper that has seen v1 and its metadata
    new_dir = tmp_path / "new-keys"
    assert (
        run_main(["keys", "new-key", "root-4", "--dir", str(new_dir), "--no-passphrase"]).returncode
        == 0
    )
    # The new online key goes to the server's online dir before the root that names it.
    assert (
        run_main(
            ["keys", "new-key", "timestamp-2", "--dir", str(keys.online), "--online"]
        ).returncode
        == 0
    )
    root1 = Metadata[Root].from_bytes(keys.root_file.read_bytes()).signed
    old_root_keyid = root1.roles["root"].keyids[0]
    old_ts_keyid = root1.roles["timestamp"].keyids[0]
    v2 = tmp_path / "2.root.json"

    # Made and signed by the new keys only (root-4 and root-2): not complete.
    made = run_main(
        [
            "keys", "sign-root", str(v2), "--previous", str(keys.root_file),
            "--revoke", f"root={old_root_keyid[:8]}", "--add", f"root={new_dir / 'root-4.pub'}",
            "--revoke", f"timestamp={old_ts_keyid[:12]}",
            "--add", f"timestamp={keys.online / 'timestamp-2.pub'}",
            "--key", str(new_dir / "root-4.pem"),
        ]
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "NOT complete" in made.stdout and "the previous root's keys: 0 of 2" in made.stdout
    assert "the new root's keys: 1 of 2" in made.stdout
    # The server refuses a root signed only by the new keys.
    refused = cp.cli("keys", "upload-root", str(v2), check=False)
    assert refused.returncode == 1 and "not signed by enough keys" in refused.stderr
    assert httpx.get(f"{cp.url}/tuf/metadata/2.root.json").status_code == 404

    # root-2 (in both) signs on "another machine": old 1 of 2, new 2 of 2.
    more = run_main(
        [
            "keys",
            "sign-root",
            str(v2),
            "--previous",
            str(keys.root_file),
            "--key",
            str(keys.root_key(2)),
        ]
    )
    assert "the previous root's keys: 1 of 2" in more.stdout
    assert "new root's keys" not in more.stdout.split("NOT complete")[1]
    # root-1 (old only) completes it.
    done = run_main(
        [
            "keys",
            "sign-root",
            str(v2),
            "--previous",
            str(keys.root_file),
            "--key",
            str(keys.root_key(1)),
        ]
    )
    assert "complete (old and new thresholds met)" in done.stdout, done.stdout
    assert "TUF root v2" in cp.cli("keys", "upload-root", str(v2)).stdout

    # The timestamp is now signed by the new key; keepers follow from v1 (fresh or cached).
    for where in ("keeper", "fresh-keeper"):
        u = updater(cp, keys, tmp_path / where)
        assert u._trusted_set.root.version == 2  # what the keeper now trusts
        assert u.get_targetinfo(target_path("storagenode", "1.0.0", "linux_amd64")) is not None
    ts = Metadata.from_bytes(httpx.get(f"{cp.url}/tuf/metadata/timestamp.json").content)
    new_ts_keyid = Metadata[Root].from_bytes(v2.read_bytes()).signed.roles["timestamp"].keyids
    assert list(ts.signatures) == new_ts_keyid

    # Uploading it again, or skipping a version, is refused.
    again = cp.cli("keys", "upload-root", str(v2), check=False)
    assert again.returncode == 1 and "not the next version" in again.stderr
    # A publish after the rotation is still signed by the (unchanged) targets key.
    _publish(cp, tmp_path, "1.1.0", "--targets-key", str(keys.targets_key))
    assert updater(cp, keys, tmp_path / "keeper").get_targetinfo(
        target_path("storagenode", "1.1.0", "linux_amd64")
    )
    json.loads(v2.read_text())  # still a valid file after the appends


def test_expiries_and_sign_targets_against_the_server(cp, keys, tmp_path):
    _publish(cp, tmp_path, "1.0.0", "--targets-key", str(keys.targets_key))
    listed = cp.cli("keys", "expiries")  # $NODEKEEPER_SERVER, no token needed
    lines = listed.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["root", "targets", "snapshot", "timestamp"]
    assert "v1" in lines[1] and "(in 89 d" in lines[1]

    # Re-signing the targets without a release: the next version, same entries.
    signed = cp.cli("keys", "sign-targets", "--targets-key", str(keys.targets_key))
    assert "targets v2 signed, 1 entries" in signed.stdout
    u = updater(cp, keys, tmp_path / "keeper")
    assert u.get_targetinfo(target_path("storagenode", "1.0.0", "linux_amd64")) is not None
    other = make_keys(tmp_path / "other")
    refused = cp.cli(
        "keys", "sign-targets", "--targets-key", str(other.targets_key),
        "--trusted-root", str(keys.root_file), check=False,
    )  # fmt: skip
    assert refused.returncode == 2 and "is not a targets key" in refused.stderr


def test_bad_root_uploads_are_refused_and_change_nothing(tmp_path, keys):
    root = Metadata[Root].from_bytes(keys.root_file.read_bytes())
    one_signature = Metadata[Root].from_bytes(keys.root_file.read_bytes())
    one_signature.signatures.pop(next(iter(one_signature.signatures)))
    one_signature.signatures.pop(next(iter(one_signature.signatures)))
    second = Metadata[Root].from_bytes(keys.root_file.read_bytes())
    second.signed.version = 2
    for key in ("root-1", "root-2"):
        second.sign(load_signer(keys.offline / f"{key}.pem"), append=True)
    targets = Metadata(Targets())
    targets.sign(load_signer(keys.targets_key))
    cases = [
        ("x" * 100, 422, "not TUF root metadata"),
        (targets.to_bytes().decode(), 422, "that is TUF targets metadata, not root"),
        (one_signature.to_bytes().decode(), 422, "1 of 2 signed, 1 more needed"),
        (second.to_bytes().decode(), 422, "upload version 1 first"),
    ]
    with signing_server(tmp_path / "cp", keys) as cp, cp.admin() as c:
        for text, status, words in cases:
            before = state(cp)
            answer = c.post("/v1/admin/tuf/root", json={"root": text})
            assert answer.status_code == status and words in answer.json()["error"], answer.text
            assert state(cp) == before
            assert httpx.get(f"{cp.url}/tuf/metadata/1.root.json").status_code == 404
        assert (
            c.post("/v1/admin/tuf/root", json={"root": root.to_bytes().decode()}).status_code == 201
        )


def test_the_next_targets_keeps_the_newest_versions_and_the_named_ones():
    from nodekeeper.server.tuf_publish import KEEP_VERSIONS, kept_releases

    versions = [f"1.{minor}.0" for minor in range(15)]
    rows = [
        {
            "process": "storagenode",
            "versions": versions,
            "minimum": "1.0.0",
            "suggested": "1.2.0",
            "target": "1.14.0",
        },
        {"process": "other", "versions": ["2.0.0"], "minimum": "2.0.0"},
    ]
    kept = kept_releases(rows)
    newest = {("storagenode", v) for v in versions[-KEEP_VERSIONS:]}
    assert kept == newest | {("storagenode", "1.0.0"), ("storagenode", "1.2.0"), ("other", "2.0.0")}


def test_after_a_targets_key_rotation_only_an_earlier_root_can_vouch_for_the_old_targets():
    """`keys sign-targets` right after a root that replaced the targets key builds on the
    targets the old key signed: an earlier root must vouch for them, never nobody."""
    from nodekeeper.server.tuf_publish import TargetsError, next_targets, signed_under
    from tests.updater.httpserver import FileServer
    from tests.updater.tuf_repository import Repository, key

    repo = Repository(FileServer())  # only its metadata: nothing is served
    repo.add_target("storagenode", "1.0.0", "linux_amd64", b"zip")
    old_targets = repo.publish_targets()
    root1 = repo.root_bytes[1]
    new_key = key()
    repo.rotate_root(repo.keys.root, sign_with=repo.keys.root[:2], targets_key=new_key)
    root2 = repo.root_bytes[2]

    assert signed_under(root2, old_targets, [root1]) == 1
    data, version = next_targets(root2, old_targets, new_key, [], None, 0.0, [root1])
    resigned = Metadata[Targets].from_bytes(data)
    Metadata[Root].from_bytes(root2).signed.verify_delegate(
        "targets", resigned.signed_bytes, resigned.signatures
    )
    assert version == resigned.signed.version == Metadata.from_bytes(old_targets).signed.version + 1
    assert list(resigned.signed.targets) == ["storagenode/1.0.0/linux_amd64.zip"]

    with pytest.raises(TargetsError, match="does not verify against its root"):
        next_targets(root2, old_targets, new_key, [], None, 0.0)  # no earlier root given
    forged = Metadata[Targets].from_bytes(old_targets)
    forged.signed.version += 1
    forged.signatures.clear()
    forged.sign(key())  # signed by a key no root ever named
    with pytest.raises(TargetsError, match="does not verify against its root"):
        next_targets(root2, forged.to_bytes(), new_key, [], None, 0.0, [root1])


def test_the_release_manager_follows_the_root_chain_from_the_root_they_trust():
    """The CLI signs over the server's current targets only once the server's roots chain
    back to the release manager's own (a compromised server could otherwise serve a root
    of its own naming the real, public, targets key)."""
    from nodekeeper.server.tuf_publish import TargetsError, follow_roots
    from tests.updater.httpserver import FileServer
    from tests.updater.tuf_repository import Repository, key

    repo = Repository(FileServer())  # only its metadata: nothing is served
    repo.rotate_root(repo.keys.root, sign_with=repo.keys.root[:2])
    served = dict(repo.root_bytes)
    assert follow_roots(served[1], served.get, 2) == [served[1], served[2]]
    assert follow_roots(served[2], served.get, 2) == [served[2]]

    intruder = [key(), key(), key()]
    repo.rotate_root(intruder, sign_with=intruder[:2])  # v3 signed only by its own keys
    with pytest.raises(TargetsError, match=r"3\.root\.json is not signed by the threshold"):
        follow_roots(served[1], dict(repo.root_bytes).get, 3)
    other = Repository(FileServer())  # another repository's root 1
    with pytest.raises(TargetsError, match="is not your trusted root"):
        follow_roots(other.root_bytes[1], served.get, 2)
    with pytest.raises(TargetsError, match="older than your trusted root"):
        follow_roots(served[2], served.get, 1)


def test_publish_refuses_a_server_whose_root_is_not_the_trusted_one(cp, keys, tmp_path):
    stranger = make_keys(tmp_path / "stranger")
    zip_path = tmp_path / "sn.zip"
    release_zip(zip_path, "1.0.0")
    before = state(cp)
    result = run_main(
        ["release", "publish", "storagenode", "1.0.0", "--artifact",
         f"linux_amd64={zip_path}", "--targets-key", str(keys.targets_key),
         "--trusted-root", str(stranger.root_file)],
        cp.env_changes(),
    )  # fmt: skip
    assert result.returncode != 0
    assert "1.root.json is not your trusted root" in result.stderr, result.stderr
    assert state(cp) == before
