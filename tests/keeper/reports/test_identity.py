"""The keeper reads the identity `storagenode setup` writes, and says clearly when it
cannot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from nodekeeper.identity import IdentityError, IdentitySource, load_identity
from tests.keeper.reports.conftest import write_identity


def test_same_node_id_as_the_node_itself(tmp_path: Path) -> None:
    """The real `storagenode setup` writes the key; the keeper derives the node ID that
    `storagenode info` prints, without importing storagenode."""
    config_dir = tmp_path / "config"
    run = [sys.executable, "-m", "storagenode"]
    subprocess.run(
        [
            *run,
            "setup",
            "--config-dir",
            config_dir,
            "--storage-dir",
            tmp_path / "storage",
            "--allocated",
            "1 MB",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    info = subprocess.run(
        [*run, "info", "--config-dir", config_dir], check=True, capture_output=True, timeout=60
    )
    node_id = json.loads(info.stdout)["node_id"]
    assert IdentitySource.in_config_dir(config_dir).get().node_id_text == node_id


def test_errors_say_what_is_wrong(tmp_path: Path) -> None:
    path = tmp_path / "identity.key"
    with pytest.raises(IdentityError, match="not set up yet"):
        load_identity(path)
    path.write_bytes(b"-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n")
    with pytest.raises(IdentityError, match="not a readable private key"):
        load_identity(path)
    other = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(
        other.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(IdentityError, match="not an ed25519 key"):
        load_identity(path)
    path.unlink()
    path.mkdir()  # something that exists but cannot be read as a file
    with pytest.raises(IdentityError, match="cannot read the node identity"):
        load_identity(path)


def test_source_follows_setup_and_a_new_identity(tmp_path: Path) -> None:
    source = IdentitySource.in_config_dir(tmp_path)
    assert source.node_id_text() is None
    first = write_identity(tmp_path)
    assert source.get().node_id == first.node_id
    second = write_identity(tmp_path)  # set up again: same size, maybe same inode and mtime
    assert source.get().node_id == second.node_id != first.node_id
    (tmp_path / "identity.key").unlink()
    with pytest.raises(IdentityError):
        source.get()
