"""A TUF repository for the keeper's tests: real ed25519 keys, metadata made and signed
with tuf.api.metadata and securesystemslib's CryptoSigner, served by a real HTTP server
on loopback (``httpserver.FileServer``) at the place the control plane serves it
(``nodekeeper.signing.layout``: ``/tuf/metadata/``, consistent snapshots).

It plays the control plane's repository as decision 083 describes it (root: 3 keys,
threshold 2; targets, snapshot and timestamp: one key each; snapshot and timestamp name
their file's length and sha256), and, on demand, a compromised one: any role may be
signed by another key, any file replaced or replayed, an expiry put in the past. It is
test code, not the control plane's implementation (the "tufrepo" side writes that).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from securesystemslib.signer import CryptoSigner, Signer
from tuf.api.metadata import Metadata, MetaFile, Root, Snapshot, TargetFile, Targets, Timestamp

from nodekeeper.signing.layout import METADATA_PATH, target_custom, target_path

from .httpserver import FileServer


def in_days(days: float) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) + timedelta(days=days)


def expired() -> datetime:
    """An expiry already past (a frozen copy), without touching any clock."""
    return datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)


def key() -> CryptoSigner:
    return CryptoSigner.generate_ed25519()


@dataclass
class Keys:
    root: list[CryptoSigner] = field(default_factory=lambda: [key(), key(), key()])
    targets: CryptoSigner = field(default_factory=key)
    snapshot: CryptoSigner = field(default_factory=key)
    timestamp: CryptoSigner = field(default_factory=key)


class Repository:
    """The metadata of one repository, published into ``files`` under /tuf/metadata/."""

    def __init__(self, files: FileServer) -> None:
        self.files = files
        self.keys = Keys()
        root = Root(expires=in_days(365), consistent_snapshot=True)
        for signer in self.keys.root:
            root.add_key(signer.public_key, Root.type)
        root.roles[Root.type].threshold = 2
        root.add_key(self.keys.targets.public_key, Targets.type)
        root.add_key(self.keys.snapshot.public_key, Snapshot.type)
        root.add_key(self.keys.timestamp.public_key, Timestamp.type)
        self.root = Metadata(root)
        for signer in self.keys.root[:2]:
            self.root.sign(signer, append=True)
        self.root_bytes: dict[int, bytes] = {1: self.root.to_bytes()}
        self.serve("1.root.json", self.root_bytes[1])
        self.targets = Metadata(Targets(expires=in_days(90)))
        self.targets_bytes = b""
        self.snapshot = Metadata(Snapshot(expires=in_days(7)))
        self.snapshot_bytes = b""
        self.timestamp = Metadata(Timestamp(expires=in_days(1)))
        self._published = {"targets": False, "snapshot": False, "timestamp": False}
        self.publish_targets()

    # -- where --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The metadata base URL ([update] tuf_metadata_url)."""
        return self.files.url + METADATA_PATH

    def serve(self, name: str, data: bytes) -> None:
        self.files.add(METADATA_PATH + name, data)

    def served(self, name: str) -> bytes:
        return self.files.files[METADATA_PATH + name]

    def write_trusted_root(self, path: Path, version: int = 1) -> Path:
        """The root a keeper ships with (the MSI's trusted-root.json)."""
        path.write_bytes(self.root_bytes[version])
        return path

    # -- targets ------------------------------------------------------------------------

    def add_target(
        self,
        process: str,
        version: str,
        platform: str,
        data: bytes,
        *,
        custom: dict[str, str] | None = None,
    ) -> TargetFile:
        """Sign an entry for an artifact (not published until ``publish_targets``)."""
        entry = TargetFile.from_data(target_path(process, version, platform), data)
        entry.unrecognized_fields["custom"] = custom or target_custom(process, version, platform)
        self.targets.signed.targets[entry.path] = entry
        return entry

    def sign_release(self, process: str, version: str, platform: str, data: bytes) -> None:
        """The release manager signs one artifact; the server re-signs snapshot and
        timestamp (what a signed ``release publish`` does)."""
        self.add_target(process, version, platform, data)
        self.publish_targets()

    def publish_targets(self, signer: Signer | None = None) -> bytes:
        """A new targets version signed by ``signer`` (default: the targets key), then a
        new snapshot and timestamp naming it."""
        self._bump(self.targets, "targets")
        self.targets.signatures.clear()
        self.targets.sign(signer or self.keys.targets)
        self.targets_bytes = self.targets.to_bytes()
        self.serve(f"{self.targets.signed.version}.targets.json", self.targets_bytes)
        self.publish_snapshot()
        return self.targets_bytes

    # -- online roles -------------------------------------------------------------------

    def publish_snapshot(
        self,
        *,
        signer: Signer | None = None,
        targets_version: int | None = None,
        targets_bytes: bytes | None = None,
    ) -> None:
        """A new snapshot naming a targets version (default: the newest), then a new
        timestamp naming it."""
        self._bump(self.snapshot, "snapshot")
        version = targets_version or self.targets.signed.version
        data = targets_bytes or self.served(f"{version}.targets.json")
        self.snapshot.signed.meta[f"{Targets.type}.json"] = MetaFile.from_data(
            version, data, ["sha256"]
        )
        self.snapshot.signatures.clear()
        self.snapshot.sign(signer or self.keys.snapshot)
        self.snapshot_bytes = self.snapshot.to_bytes()
        self.serve(f"{self.snapshot.signed.version}.snapshot.json", self.snapshot_bytes)
        self.publish_timestamp()

    def publish_timestamp(
        self,
        *,
        signer: Signer | None = None,
        expires: datetime | None = None,
        snapshot_version: int | None = None,
    ) -> bytes:
        """A new timestamp naming a snapshot version (default: the newest)."""
        self._bump(self.timestamp, "timestamp")
        self.timestamp.signed.expires = expires or in_days(1)
        version = snapshot_version or self.snapshot.signed.version
        self.timestamp.signed.snapshot_meta = MetaFile.from_data(
            version, self.served(f"{version}.snapshot.json"), ["sha256"]
        )
        self.timestamp.signatures.clear()
        self.timestamp.sign(signer or self.keys.timestamp)
        data = self.timestamp.to_bytes()
        self.serve("timestamp.json", data)
        return data

    def _bump(
        self, md: Metadata[Targets] | Metadata[Snapshot] | Metadata[Timestamp], role: str
    ) -> None:
        if self._published[role]:
            md.signed.version += 1
        self._published[role] = True

    # -- root -----------------------------------------------------------------------------

    def rotate_root(
        self,
        new_root_keys: list[CryptoSigner],
        *,
        sign_with: list[CryptoSigner],
        targets_key: CryptoSigner | None = None,
    ) -> int:
        """Root N+1 naming ``new_root_keys`` (threshold 2) and, optionally, a new targets
        key, signed by ``sign_with`` (which must hold the old threshold and the new one
        for a client to follow it). Served as N+1.root.json; returns N+1."""
        new = Metadata.from_bytes(self.root.to_bytes())
        root = new.signed
        assert isinstance(root, Root)
        root.version += 1
        for keyid in list(root.roles[Root.type].keyids):
            root.revoke_key(keyid, Root.type)
        for signer in new_root_keys:
            root.add_key(signer.public_key, Root.type)
        if targets_key is not None:
            for keyid in list(root.roles[Targets.type].keyids):
                root.revoke_key(keyid, Targets.type)
            root.add_key(targets_key.public_key, Targets.type)
        new.signatures.clear()
        for signer in sign_with:
            new.sign(signer, append=True)
        self.root = new
        self.root_bytes[root.version] = new.to_bytes()
        self.serve(f"{root.version}.root.json", self.root_bytes[root.version])
        if targets_key is not None:
            self.keys.targets = targets_key
        self.keys.root = new_root_keys
        return root.version
