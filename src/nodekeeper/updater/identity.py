"""The node ID, read from the node's identity key, without importing ``storagenode``.

The keeper manages any node binary, so it reads the key file itself: an ed25519 private
key in PKCS#8 PEM at ``<node config dir>/identity.key``. The ID is derived with the same
rule the node and the control plane use (``nodekeeper.version.nodeid``).
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from nodekeeper.version.nodeid import node_id_from_public_key

from .errors import IdentityUnavailable

IDENTITY_FILE = "identity.key"


def read_node_id(config_dir: Path) -> bytes:
    """The 32-byte node ID of the identity in ``config_dir``; IdentityUnavailable if the
    file is missing (the node is not set up yet) or is not an ed25519 PEM key."""
    path = Path(config_dir) / IDENTITY_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise IdentityUnavailable(
            f"no node identity at {path}: the node is not set up yet (storagenode setup)"
        ) from None
    except OSError as exc:
        raise IdentityUnavailable(f"cannot read the node identity {path}: {exc}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise IdentityUnavailable(f"{path} is not a PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise IdentityUnavailable(f"{path} is not an ed25519 key")
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return node_id_from_public_key(raw)
