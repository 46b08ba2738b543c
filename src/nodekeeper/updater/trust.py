"""Signed releases on the keeper's side (decision 085): the settings and the pure checks.

With ``[update] trusted_root`` set, an artifact is downloaded only if the control plane's
TUF metadata (refreshed by ``signed.py`` through tuf.ngclient) signs an entry for it, and
that entry says exactly what the announcement says. This module holds what needs no TUF
and no network: the settings, the description of one signed entry, and the comparison of
that entry with the announcement, so that deciding stays apart from fetching and the
keeper does not import tuf (a few MB) until a check actually uses it.

``load_trusted_root`` is the one exception: it reads and self-verifies a root.json with
tuf.api.metadata (imported there, lazily), for the config's validation and for the check.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nodekeeper.signing.layout import target_custom, target_path
from nodekeeper.version.schema import Artifact

from .errors import SignatureCheckFailed

# Under the state dir, beside (never inside) versions/: kept across self-updates and MSI
# upgrades, it holds the roots that rotated since the shipped one and the newest
# timestamp/snapshot/targets seen (what rollback protection compares against).
METADATA_DIR_NAME = "tuf"

FIX_ROOT = (
    "set [update] trusted_root to the root.json your release manager published (the MSI "
    "installs it as trusted-root.json), or remove the key to install unsigned releases"
)


@dataclass(frozen=True)
class TrustSettings:
    """Where trust starts and where the metadata comes from and is kept."""

    trusted_root: Path  # the shipped root.json: the first link of the root chain
    metadata_url: str  # the repository's metadata base URL (trailing slash)
    metadata_dir: Path  # <state dir>/tuf: the cache tuf.ngclient keeps


@dataclass(frozen=True)
class SignedRelease:
    """What a fetch must find signed: this process, version and platform."""

    trust: TrustSettings
    process: str
    version: str
    platform: str

    @property
    def path(self) -> str:
        """The TUF target path (``nodekeeper.signing.layout``)."""
        return target_path(self.process, self.version, self.platform)

    @property
    def custom(self) -> dict[str, str]:
        return target_custom(self.process, self.version, self.platform)


@dataclass(frozen=True)
class SignedTarget:
    """One entry of the verified targets metadata, as far as the keeper needs it."""

    path: str
    length: int
    sha256: str | None
    custom: Any


def load_trusted_root(path: Path) -> bytes:
    """The bytes of a valid, self-signed TUF root at ``path``. Raises ValueError saying
    what is wrong and how to fix it (the config names the key)."""
    from tuf.api.exceptions import RepositoryError
    from tuf.api.metadata import Metadata, Root

    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file; {FIX_ROOT}") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read it ({exc.strerror or exc}); {FIX_ROOT}") from None
    try:
        md = Metadata[Root].from_bytes(data)
    except RepositoryError as exc:  # DeserializationError: not JSON, not TUF metadata
        raise ValueError(f"{path}: not TUF metadata ({exc}); {FIX_ROOT}") from None
    if not isinstance(md.signed, Root):
        raise ValueError(
            f"{path}: TUF {md.signed.type} metadata, not a root (root.json); {FIX_ROOT}"
        )
    try:
        # A root must carry the threshold of its own root keys' signatures.
        md.signed.verify_delegate(Root.type, md.signed_bytes, md.signatures)
    except RepositoryError as exc:
        raise ValueError(
            f"{path}: this root is not signed by its own root keys ({exc}): a damaged or "
            f"unfinished root (sign it with `nodekeeper keys`); {FIX_ROOT}"
        ) from None
    return data


def compare_signed(signed: SignedTarget | None, release: SignedRelease, artifact: Artifact) -> None:
    """Pure: refuse (SignatureCheckFailed) unless the signed entry is the announced
    artifact: present, the same length and sha256, and custom fields naming the same
    process, version and platform."""
    what = f"{release.process} {release.version} for {release.platform}"
    if signed is None:
        raise SignatureCheckFailed(
            f"signed releases: {what} is not in the signed targets metadata (no entry "
            f"{release.path}): it was not signed with the release manager's targets key, "
            "or the announcement offers something the release manager never published",
            check="not_signed",
            role="targets",
        )
    if signed.custom != release.custom:
        raise SignatureCheckFailed(
            f"signed releases: the signed entry {release.path} describes {signed.custom!r}, "
            f"not {release.custom!r}: refusing to take one signed artifact for another",
            check="target_mismatch",
            role="targets",
        )
    if signed.length != artifact.size or not (
        signed.sha256 is not None and hmac.compare_digest(signed.sha256, artifact.sha256)
    ):
        raise SignatureCheckFailed(
            f"signed releases: the announcement of {what} says {artifact.size} bytes with "
            f"sha256 {artifact.sha256}, the signed release {release.path} is "
            f"{signed.length} bytes with sha256 {signed.sha256}: the announcement does not "
            "offer the signed artifact (a tampered announcement or mirror)",
            check="announcement_mismatch",
            role="targets",
        )


def signed_artifact(signed: SignedTarget, artifact: Artifact) -> Artifact:
    """The artifact to download: the announcement's URL, bounded and checked by the
    signed length and sha256 (equal to the announced ones, see ``compare_signed``)."""
    assert signed.sha256 is not None
    return Artifact(url=artifact.url, sha256=signed.sha256, size=signed.length)
