"""A small TUF repository for the Windows side's tests (decision 086): real metadata signed
with real ed25519 keys (tuf.api.metadata, securesystemslib's CryptoSigner), written as the
control plane serves it (consistent snapshots: ``N.root.json``, ``N.snapshot.json``,
``N.targets.json``, ``timestamp.json``), and a loopback HTTP server for it.

The repository has rotated its root once: version 2 replaces the root key *and* the
timestamp key, so a client that never learned ``2.root.json`` cannot verify the timestamp.
That makes "the keeper kept the rotated root" something a test can see.

This is a fixture, not the control plane's repository code ("tufrepo", decision 084).
"""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, MetaFile, Root, Snapshot, TargetFile, Targets, Timestamp

from nodekeeper.signing.layout import METADATA_PATH, target_custom, target_path

# What the repository signs: one artifact of the node, for Windows.
PROCESS, VERSION, PLATFORM = "storagenode", "1.2.3", "windows_amd64"
ARTIFACT = b"the node's release zip, as far as TUF cares" * 10
# Served like METADATA_PATH, except that no N.root.json is there: a client must find the
# rotated root in its own cache (root_history/) to verify anything.
NO_ROOTS_PATH = "/no-roots" + METADATA_PATH


def _in(days: int) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) + timedelta(days=days)


@dataclass(frozen=True)
class Repository:
    metadata: Path  # the served directory
    root_v1: bytes  # what an MSI ships (and the keeper is bootstrapped with)
    root_v2: bytes  # the rotated root, only on the server
    target: str  # the artifact's target path
    length: int
    sha256: str


def make_repository(out: Path) -> Repository:
    """Writes the metadata under ``out`` and returns what a test compares with."""
    out.mkdir(parents=True, exist_ok=True)
    old_root, new_root = CryptoSigner.generate_ed25519(), CryptoSigner.generate_ed25519()
    old_ts, new_ts = CryptoSigner.generate_ed25519(), CryptoSigner.generate_ed25519()
    targets_key, snapshot_key = CryptoSigner.generate_ed25519(), CryptoSigner.generate_ed25519()

    root = Metadata(Root(expires=_in(365)))
    for role, signer in (("root", old_root), ("timestamp", old_ts), ("targets", targets_key),
                         ("snapshot", snapshot_key)):  # fmt: skip
        root.signed.add_key(signer.public_key, role)
    root.sign(old_root)
    root_v1 = root.to_bytes()

    # The rotation: version 2 signed by the old root key (the chain) and the new one.
    rotated = Metadata[Root].from_bytes(root_v1)
    rotated.signed.version = 2
    rotated.signed.revoke_key(old_root.public_key.keyid, "root")
    rotated.signed.add_key(new_root.public_key, "root")
    rotated.signed.revoke_key(old_ts.public_key.keyid, "timestamp")
    rotated.signed.add_key(new_ts.public_key, "timestamp")
    rotated.signatures.clear()
    rotated.sign(old_root, append=True)
    rotated.sign(new_root, append=True)
    root_v2 = rotated.to_bytes()

    target = target_path(PROCESS, VERSION, PLATFORM)
    entry = TargetFile.from_data(target, ARTIFACT, ["sha256"])
    entry.unrecognized_fields["custom"] = target_custom(PROCESS, VERSION, PLATFORM)
    targets = Metadata(Targets(expires=_in(90)))
    targets.signed.targets[target] = entry
    targets.sign(targets_key)
    targets_bytes = targets.to_bytes()
    snapshot = Metadata(Snapshot(expires=_in(7)))
    snapshot.signed.meta["targets.json"] = MetaFile.from_data(1, targets_bytes, ["sha256"])
    snapshot.sign(snapshot_key)
    snapshot_bytes = snapshot.to_bytes()
    timestamp = Metadata(Timestamp(expires=_in(1)))
    timestamp.signed.snapshot_meta = MetaFile.from_data(1, snapshot_bytes, ["sha256"])
    timestamp.sign(new_ts)  # the rotated key: only root v2 verifies it

    for name, data in (("1.root.json", root_v1), ("2.root.json", root_v2),
                       ("1.targets.json", targets_bytes), ("1.snapshot.json", snapshot_bytes),
                       ("timestamp.json", timestamp.to_bytes())):  # fmt: skip
        (out / name).write_bytes(data)
    return Repository(out, root_v1, root_v2, target, entry.length, entry.hashes["sha256"])


@dataclass
class MetadataServer:
    url: str  # http://127.0.0.1:PORT
    requests: list[str] = field(default_factory=list)  # paths asked for, in order


@contextlib.contextmanager
def serve(repository: Repository) -> Iterator[MetadataServer]:
    """The metadata over HTTP on loopback, at METADATA_PATH (and NO_ROOTS_PATH): the exact
    stored bytes, application/json, 404 for anything else."""
    served = {p.name: p.read_bytes() for p in repository.metadata.iterdir()}
    server_info = MetadataServer(url="")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            server_info.requests.append(self.path)
            for prefix, roots in ((METADATA_PATH, True), (NO_ROOTS_PATH, False)):
                name = self.path.removeprefix(prefix)
                wanted = self.path.startswith(prefix) and name in served
                if wanted and (roots or not name.endswith(".root.json")):
                    self._answer(200, served[name])
                    return
            self._answer(404, b"not found")

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server_info.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server_info
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
