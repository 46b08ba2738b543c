"""The node ID for the rollout math, from the node's identity key (``nodekeeper.identity``
reads the file; the keeper never imports ``storagenode``)."""

from __future__ import annotations

from pathlib import Path

from nodekeeper.identity import IDENTITY_FILE, IdentityError, load_identity

from .errors import IdentityUnavailable


def read_node_id(config_dir: Path) -> bytes:
    """The 32-byte node ID of the identity in ``config_dir``; IdentityUnavailable if the
    file is missing (the node is not set up yet) or is not an ed25519 PEM key."""
    try:
        return load_identity(Path(config_dir) / IDENTITY_FILE).node_id
    except IdentityError as exc:
        raise IdentityUnavailable(str(exc)) from None
