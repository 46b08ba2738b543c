"""The node's identity as the keeper sees it: its node ID (for the rollout math) and the
ed25519 key that signs its reports.

`storagenode setup` writes ``<node config dir>/identity.key`` (PKCS#8 PEM). The keeper
reads the same file rather than importing ``storagenode``: the node is a separate program
that the keeper updates, and only the file format and the node-ID rule are shared
(``nodekeeper.version.nodeid``). The keeper never writes this file.

It sits at the top of the package, below both its users: the keeper's reports sign with
the key, and the updater's rollout math needs the node ID; the updater never imports the
keeper.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from nodekeeper.version.nodeid import format_node_id, node_id_from_public_key

IDENTITY_FILE = "identity.key"


class IdentityError(Exception):
    """The identity file is missing, unreadable or not an ed25519 key."""


@dataclass(frozen=True)
class NodeIdentity:
    key: Ed25519PrivateKey
    node_id: bytes  # 32 raw bytes

    @property
    def node_id_text(self) -> str:
        """Storj's base58check form, as reports carry it."""
        return format_node_id(self.node_id)


def identity_from_key(key: Ed25519PrivateKey) -> NodeIdentity:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return NodeIdentity(key, node_id_from_public_key(raw))


def load_identity(path: Path) -> NodeIdentity:
    """Read one identity file; every failure is an IdentityError that names the file and
    what to do, because the operator reads it in the keeper log (the caller adds what
    waits meanwhile)."""
    return parse_identity(read_identity_file(path), path)


def read_identity_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise IdentityError(
            f"no node identity at {path}: the node is not set up yet (run `storagenode setup`)"
        ) from None
    except OSError as exc:
        raise IdentityError(
            f"cannot read the node identity {path}: {exc.strerror or exc}"
        ) from None


def parse_identity(pem: bytes, path: Path) -> NodeIdentity:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise IdentityError(
            f"the node identity {path} is not a readable private key ({exc})"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise IdentityError(f"the node identity {path} is not an ed25519 key")
    return identity_from_key(key)


class IdentitySource:
    """The identity in one file, re-read on every use.

    The keeper may start before the node is set up, and an operator may set the node up
    again; reading a 120-byte file is cheap next to the network request a report costs,
    and it means no restart is needed for either. (Comparing stat results instead would
    miss a rewrite within one tick of the file system's coarse timestamps.) The key is
    parsed again only when the bytes change.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._pem: bytes | None = None
        self._identity: NodeIdentity | None = None

    @classmethod
    def in_config_dir(cls, config_dir: Path) -> IdentitySource:
        return cls(Path(config_dir) / IDENTITY_FILE)

    def get(self) -> NodeIdentity:
        """The current identity, or IdentityError saying why there is none."""
        pem = read_identity_file(self.path)
        if self._identity is None or pem != self._pem:
            self._identity = None
            self._identity = parse_identity(pem, self.path)
            self._pem = pem
        return self._identity

    def node_id_text(self) -> str | None:
        """The node ID if the identity can be read now, else None (never raises)."""
        try:
            return self.get().node_id_text
        except IdentityError:
            return None
