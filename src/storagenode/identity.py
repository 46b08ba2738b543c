"""The node identity: an ed25519 key whose public half names the node."""

from __future__ import annotations

import hashlib
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from nodekeeper.version.nodeid import format_node_id

NODE_ID_VERSION = 0


class IdentityError(Exception):
    """The identity file is missing or unreadable."""


def node_id_from_public_key(raw_public_key: bytes) -> bytes:
    """32 bytes: sha256 of the raw public key, the last byte replaced by the ID version
    (Storj keeps the ID format version there; version 0 is the only one in use)."""
    digest = hashlib.sha256(raw_public_key).digest()
    return digest[:-1] + bytes([NODE_ID_VERSION])


def new_identity_pem() -> tuple[bytes, bytes]:
    """(PKCS#8 PEM of a fresh private key, its node ID)."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pem, node_id_of(key)


def node_id_of(key: Ed25519PrivateKey) -> bytes:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return node_id_from_public_key(raw)


def load_identity(path: Path) -> tuple[Ed25519PrivateKey, bytes]:
    """(private key, node ID) from a PEM file written by ``setup``."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise IdentityError(f"cannot read the node identity {path}: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise IdentityError(f"{path} is not an ed25519 key")
    return key, node_id_of(key)


def node_id_text(node_id: bytes) -> str:
    return format_node_id(node_id)
