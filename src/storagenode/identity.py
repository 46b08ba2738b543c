"""The node identity: an ed25519 key whose public half names the node."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

# The derivation rule is shared with the keeper and the control plane, which check that
# reports are signed by the node they name.
from nodekeeper.version.nodeid import format_node_id, node_id_from_public_key


class IdentityError(Exception):
    """The identity file is missing or unreadable."""


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
        pem = path.read_bytes()
    except OSError as exc:
        raise IdentityError(f"cannot read the node identity {path}: {exc}") from None
    return parse_identity_pem(pem, path)


def parse_identity_pem(pem: bytes, source: Path) -> tuple[Ed25519PrivateKey, bytes]:
    """(private key, node ID) from the bytes of an identity file read from ``source``."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise IdentityError(f"cannot read the node identity {source}: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise IdentityError(f"{source} is not an ed25519 key")
    return key, node_id_of(key)


def node_id_text(node_id: bytes) -> str:
    return format_node_id(node_id)
