"""The release manager's side of a signed publish (decision 084): the next targets.

`release publish --targets-key` and `keys sign-targets` start from the targets the control
plane serves now, checked against its current root (signed by the targets role's
threshold, and the key given must be one of that role's) or, right after a root that
replaced the targets key, against the earlier root it was signed under (its entries are
then re-signed by the new key, and `keys sign-targets` lists them for review), keep the
entries of the releases still worth installing, add this release's, bump the version,
set the expiry 90 days out and sign. The server checks it all again (tuf_repo.check_targets).

Bounded: entries are kept for the newest ``KEEP_VERSIONS`` versions of each process plus
its minimum, suggested and rollout target, and for nothing the server no longer lists.
An entry dropped here is dropped at the next publish; a keeper never needs an old entry
to roll back (the version it goes back to is already installed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from securesystemslib.signer import Signer
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, Root, TargetFile, Targets
from tuf.api.serialization import DeserializationError

from nodekeeper.signing.layout import target_custom, target_path
from nodekeeper.version.versions import parse_version

from .tuf_expiry import PERIODS
from .tuf_keys import keyid_prefix

KEEP_VERSIONS = 10


class TargetsError(Exception):
    """Why the next targets cannot be made; phrased for the release manager."""


@dataclass(frozen=True)
class Artifact:
    process: str
    version: str
    platform: str
    sha256: str
    size: int


def kept_releases(status_rows: Iterable[dict[str, Any]]) -> set[tuple[str, str]]:
    """(process, version) whose entries stay: from the rows of GET /v1/admin/status."""
    kept: set[tuple[str, str]] = set()
    for row in status_rows:
        process = row["process"]
        versions = sorted(row.get("versions") or (), key=parse_version)
        named = {row.get("minimum"), row.get("suggested"), row.get("target")}
        for version in versions[-KEEP_VERSIONS:] + [v for v in versions if v in named]:
            kept.add((process, version))
    return kept


def check_signer(root: Root, signer: Signer) -> None:
    keyid = signer.public_key.keyid
    role = root.roles["targets"]
    if keyid not in role.keyids:
        names = ", ".join(keyid_prefix(k) for k in role.keyids)
        raise TargetsError(
            f"the key {keyid_prefix(keyid)} is not a targets key of the control plane's root "
            f"v{root.version} (its targets keys: {names}); pass the right --targets-key FILE"
        )


def _load_root(data: bytes, which: str) -> Root:
    try:
        root = Metadata[Root].from_bytes(data).signed
    except (DeserializationError, ValueError, TypeError, KeyError) as exc:
        raise TargetsError(f"the control plane's {which} is not TUF metadata: {exc}") from None
    if not isinstance(root, Root):
        raise TargetsError(f"the control plane serves something else as its {which}")
    return root


def _current_targets(current: bytes) -> Metadata[Targets]:
    try:
        md = Metadata[Targets].from_bytes(current)
    except (DeserializationError, ValueError, TypeError) as exc:
        raise TargetsError(
            f"the control plane's current targets is not TUF metadata: {exc}"
        ) from None
    if not isinstance(md.signed, Targets):
        raise TargetsError(f"the control plane's current targets is {md.signed.type} metadata")
    return md


def follow_roots(trusted: bytes, served: Callable[[int], bytes | None], newest: int) -> list[bytes]:
    """The root chain from the release manager's own ``trusted`` root to the control
    plane's ``newest`` version, each link verified by the one before it (the old
    threshold) and by itself (the new), as a keeper verifies it: oldest first, ``trusted``
    included. ``served(v)`` is the server's ``v.root.json``. Without this the CLI would
    take the server's word for the root, and a compromised server could serve a root of
    its own naming the real targets key, so that the release manager signs over entries
    only the server vouched for."""
    chain = [trusted]
    current = _load_root(trusted, "trusted root (--trusted-root)")
    if newest < current.version:
        raise TargetsError(
            f"the control plane's root is v{newest}, older than your trusted root "
            f"v{current.version}: upload the newer root (`nodekeeper keys upload-root`)"
        )
    if served(current.version) != trusted:
        raise TargetsError(
            f"the control plane's {current.version}.root.json is not your trusted root: it "
            "is another repository, or a compromised server; nothing was signed"
        )
    for version in range(current.version + 1, newest + 1):
        data = served(version)
        if data is None:
            raise TargetsError(
                f"the control plane lists root v{newest} but not {version}.root.json"
            )
        try:
            new = Metadata[Root].from_bytes(data)
            ok = isinstance(new.signed, Root) and new.signed.version == version
            ok = (
                ok
                and new.signed.get_root_verification_result(
                    current, new.signed_bytes, new.signatures
                ).verified
            )
        except (DeserializationError, ValueError, TypeError, KeyError):
            ok = False
        if not ok:
            raise TargetsError(
                f"the control plane's {version}.root.json is not signed by the threshold of "
                f"root v{version - 1}'s keys and its own: a compromised server, or a root "
                "uploaded by mistake; nothing was signed"
            )
        chain.append(data)
        current = new.signed
    return chain


def signed_under(root_bytes: bytes, current: bytes, earlier_roots: Sequence[bytes] = ()) -> int:
    """The version of the root whose targets keys signed ``current``: the current root's,
    or (after a root that replaced the targets key, before anyone re-signed) an earlier
    one's, newest first. Raises TargetsError when none did: never sign on top of entries
    nobody signed (a compromised server could slip its own in for us to sign)."""
    md = _current_targets(current)
    first_error: Exception | None = None
    for data, which in [(root_bytes, "root"), *((r, "earlier root") for r in earlier_roots)]:
        root = _load_root(data, which)
        try:
            root.verify_delegate("targets", md.signed_bytes, md.signatures)
            return root.version
        except (UnsignedMetadataError, ValueError, TypeError) as exc:
            first_error = first_error or exc
    raise TargetsError(
        f"the control plane's current targets does not verify against its root: {first_error}"
    )


def next_targets(
    root_bytes: bytes,
    current: bytes | None,
    signer: Signer,
    add: Iterable[Artifact],
    kept: set[tuple[str, str]] | None,
    now: float,
    earlier_roots: Sequence[bytes] = (),
) -> tuple[bytes, int]:
    """The signed bytes of the next targets and its version. ``earlier_roots`` (newest
    first) may vouch for the current targets after a targets key rotation."""
    root = _load_root(root_bytes, "root")
    check_signer(root, signer)
    version = 1
    entries: dict[str, TargetFile] = {}
    if current is not None:
        signed_under(root_bytes, current, earlier_roots)
        md = _current_targets(current)
        version = md.signed.version + 1
        for path, entry in md.signed.targets.items():
            custom = entry.unrecognized_fields.get("custom") or {}
            release = (custom.get("process"), custom.get("version"))
            if kept is None or release in kept:
                entries[path] = entry
    for a in add:
        path = target_path(a.process, a.version, a.platform)
        entry = TargetFile(a.size, {"sha256": a.sha256}, path)
        entry.unrecognized_fields["custom"] = target_custom(a.process, a.version, a.platform)
        entries[path] = entry
    expires = datetime.fromtimestamp(now + PERIODS["targets"], UTC)
    targets = Targets(version=version, expires=expires.replace(microsecond=0), targets=entries)
    md = Metadata(targets)
    md.sign(signer)
    return md.to_bytes(), version
