"""The node ID from identity.key; re-verifying a file from disk."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from nodekeeper.updater.errors import IdentityUnavailable, VerificationFailed
from nodekeeper.updater.identity import read_node_id
from nodekeeper.updater.verify import verified_path, verify_file
from nodekeeper.version.schema import Artifact
from storagenode.identity import new_identity_pem


def test_node_id_matches_the_nodes_own(tmp_path: Path) -> None:
    pem, node_id = new_identity_pem()
    (tmp_path / "identity.key").write_bytes(pem)
    assert read_node_id(tmp_path) == node_id


def test_not_set_up(tmp_path: Path) -> None:
    with pytest.raises(IdentityUnavailable, match="not set up yet") as e:
        read_node_id(tmp_path)
    assert e.value.kind == "identity_unavailable"


def test_garbage_key(tmp_path: Path) -> None:
    (tmp_path / "identity.key").write_text("not a key")
    with pytest.raises(IdentityUnavailable, match="is not a readable private key"):
        read_node_id(tmp_path)


def test_other_key_type(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (tmp_path / "identity.key").write_bytes(pem)
    with pytest.raises(IdentityUnavailable, match="not an ed25519 key"):
        read_node_id(tmp_path)


def test_unreadable_key(tmp_path: Path) -> None:
    (tmp_path / "identity.key").mkdir()
    with pytest.raises(IdentityUnavailable, match="cannot read the node identity"):
        read_node_id(tmp_path)


DATA = b"artifact bytes" * 1000


def artifact(data: bytes = DATA) -> Artifact:
    return Artifact(url="https://x/a.zip", sha256=hashlib.sha256(data).hexdigest(), size=len(data))


def test_verify_file_accepts_the_announced_bytes(tmp_path: Path) -> None:
    f = tmp_path / "a.zip"
    f.write_bytes(DATA)
    verify_file(f, artifact())
    assert f.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [(DATA[:-1], "is 13999 bytes, the announcement says 14000"), (DATA[:-1] + b"!", "sha256")],
)
def test_verify_file_deletes_a_mismatch(tmp_path: Path, content: bytes, message: str) -> None:
    f = tmp_path / "a.zip"
    f.write_bytes(content)
    with pytest.raises(VerificationFailed, match=message):
        verify_file(f, artifact())
    assert not f.exists()


def test_verified_path() -> None:
    assert verified_path(Path("/d/a.zip.part")) == Path("/d/a.zip")
    assert verified_path(Path("/d/a.zip")) == Path("/d/a.zip")
