"""The control plane as a TUF repository (decisions 083, 084).

What the server holds: the root (uploaded by the operator, signed offline), the targets
(signed offline by the release manager and sent with each publish), and the snapshot and
timestamp, which it signs itself with the online keys read from ``--tuf-online-keys DIR``.
All of it is rows of ``tuf_metadata`` (tuf_store.py), served as stored.

Everything that checks or signs metadata goes through tuf.api.metadata: a root is accepted
when ``get_root_verification_result`` says the previous root's threshold and its own
signed it; targets when ``root.verify_delegate("targets", ...)`` accepts its signatures.
A server without a root is not a TUF repository and publishes as before (083).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from securesystemslib.signer import CryptoSigner
from sqlalchemy.engine import Connection
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, MetaFile, Root, Snapshot, Targets, Timestamp
from tuf.api.serialization import DeserializationError

from nodekeeper.signing.layout import target_custom, target_path

from . import tuf_store
from .errors import ConflictError, ControlPlaneError, InvalidRequestError
from .models import ArtifactRecord, ProcessRecord
from .store import Store
from .tuf_expiry import ONLINE_ROLES, PERIODS, Expiry, resign_due, warning
from .tuf_keys import keyid_prefix, load_online_signers

log = logging.getLogger("nodekeeper.server.tuf")

HASHES = ["sha256"]
# Re-sign attempts when another replica's snapshot or timestamp got the version first.
RACE_RETRIES = 5
# A warning about one role is logged again after this long while it lasts.
WARN_AGAIN_SECONDS = 3600.0


class OnlineKeysMissing(ControlPlaneError):
    """The server cannot sign snapshot or timestamp: 503, nothing changed."""

    status_code = 503


def expires_at(now: float, role: str) -> datetime:
    """The expiry of ``role`` signed at ``now``: UTC, whole seconds (TUF drops the rest)."""
    return datetime.fromtimestamp(now + PERIODS[role], UTC).replace(microsecond=0)


MAX_METADATA_BYTES = 1 << 20  # an uploaded root or targets; tuf's own caps are 512 KB / 5 MB


def parse(data: bytes, kind: type, what: str) -> Metadata:
    """Metadata of the ``kind`` expected (Root, Targets), or a 422 that says what is wrong:
    ``Metadata[Root].from_bytes`` alone accepts any role."""
    if len(data) > MAX_METADATA_BYTES:
        raise InvalidRequestError(f"the {what} metadata is over {MAX_METADATA_BYTES} bytes")
    try:
        md = Metadata.from_bytes(data)
    except (DeserializationError, ValueError, TypeError, KeyError) as exc:
        raise InvalidRequestError(f"not TUF {what} metadata: {exc}") from None
    if not isinstance(md.signed, kind):
        raise InvalidRequestError(f"that is TUF {md.signed.type} metadata, not {what}")
    return md


def _epoch(md: Metadata) -> float:
    return md.signed.expires.timestamp()


def _keys_named(root: Root, role: str) -> str:
    r = root.roles[role]
    keys = ", ".join(keyid_prefix(k) for k in r.keyids)
    return f"{r.threshold} of [{keys}]"


@dataclass(frozen=True)
class Expected:
    """What the signed entry of one artifact must say."""

    path: str
    length: int
    sha256: str
    custom: dict[str, str]


def expected_entries(
    process: str, version: str, artifacts: Iterable[ArtifactRecord]
) -> dict[str, Expected]:
    return {
        target_path(process, version, a.platform): Expected(
            target_path(process, version, a.platform),
            a.size,
            a.sha256,
            target_custom(process, version, a.platform),
        )
        for a in artifacts
    }


def known_entries(processes: dict[str, ProcessRecord]) -> dict[str, Expected]:
    """The entries every published release's artifacts would have."""
    known: dict[str, Expected] = {}
    for name, record in processes.items():
        for version, release in record.releases.items():
            known |= expected_entries(name, version, release.artifacts.values())
    return known


class TufRepository:
    """One replica's view of the repository; the state is in the database."""

    def __init__(
        self, store: Store, online_keys: Path | None, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.online_keys = online_keys
        self.clock = clock
        self._warned: dict[str, tuple[str, float]] = {}
        self._offline_said: tuple[str, ...] = ()

    # -- reads ------------------------------------------------------------------------

    def root(self, conn: Connection | None = None) -> Metadata[Root] | None:
        if conn is None:
            with self.store.engine.connect() as c:
                return self.root(c)
        row = tuf_store.latest(conn, "root")
        return None if row is None else Metadata[Root].from_bytes(row.data)

    def enabled(self) -> bool:
        return self.root() is not None

    def expiries(self) -> list[Expiry]:
        found = tuf_store.latest_versions(self.store)
        return [
            Expiry(role, *found[role])
            for role in ("root", "targets", "snapshot", "timestamp")
            if role in found
        ]

    def signers(self, root: Root) -> dict[str, list[CryptoSigner]]:
        """The online signers the server holds for snapshot and timestamp, by role; raises
        OnlineKeysMissing naming the keys and the directory when a threshold is short."""
        if self.online_keys is None:
            raise OnlineKeysMissing(
                "this control plane has a TUF root but no online keys: restart it with "
                "`server run --tuf-online-keys DIR` (the online directory of `keys create`; "
                f"it needs snapshot {_keys_named(root, 'snapshot')} and timestamp "
                f"{_keys_named(root, 'timestamp')})"
            )
        held, skipped = load_online_signers(self.online_keys)
        out: dict[str, list[CryptoSigner]] = {}
        short = []
        for role in ONLINE_ROLES:
            r = root.roles[role]
            out[role] = [held[k] for k in r.keyids if k in held]
            if len(out[role]) < r.threshold:
                short.append(f"{role} {_keys_named(root, role)}")
        if short:
            extra = f" (skipped: {'; '.join(skipped)})" if skipped else ""
            raise OnlineKeysMissing(
                f"the online keys in {self.online_keys} do not include {' and '.join(short)} "
                f"named by root v{root.version}: copy those key files there (the server reads "
                f"the directory at each signing){extra}"
            )
        offline = [
            f"{role} key {keyid_prefix(k)}"
            for role in ("root", "targets")
            for k in root.roles[role].keyids
            if k in held
        ]
        if offline and tuple(offline) != self._offline_said:
            self._offline_said = tuple(offline)  # once per finding, not at every signing
            log.error(
                "the online keys directory %s holds the offline %s: move it off the server "
                "(a server that holds it can sign releases by itself)",
                self.online_keys,
                ", ".join(offline),
            )
        return out

    # -- the root ---------------------------------------------------------------------

    def install_root(self, data: bytes, now: float) -> tuple[Metadata[Root], list[str]]:
        """Accept a new root: version 1 verified by itself, or current + 1 verified by the
        current root's threshold and its own. The online keys it names must be here (so
        snapshot and timestamp are signed again at once); returns notes for the operator."""
        new = parse(data, Root, "root")
        notes: list[str] = []
        if not new.signed.consistent_snapshot:
            raise InvalidRequestError(
                "the root must have consistent_snapshot true (keepers fetch N.snapshot.json "
                "and N.targets.json by version); make it with `nodekeeper keys create`"
            )
        if _epoch(new) <= now:
            raise InvalidRequestError(f"root v{new.signed.version} has already expired")
        signers = self.signers(new.signed)  # before anything is written
        for _attempt in range(RACE_RETRIES):
            try:
                with self.store.engine.begin() as conn:
                    current_row = tuf_store.latest(conn, "root")
                    current = (
                        None if current_row is None else Metadata[Root].from_bytes(current_row.data)
                    )
                    _check_root(current, new)
                    tuf_store.insert(conn, "root", new.signed.version, data, _epoch(new), now)
                    self._sign_online(conn, new.signed, signers, now, force=True)
            except sa.exc.IntegrityError:
                continue  # a re-sign or another upload got a version first: look again
            if current is not None and (
                current.signed.roles["targets"].keyids != new.signed.roles["targets"].keyids
            ):
                notes.append(
                    "the targets keys changed: sign targets again with the new key now "
                    "(`nodekeeper keys sign-targets --targets-key FILE`); until then "
                    "keepers refuse every update"
                )
            log.info("TUF root v%d installed", new.signed.version)
            return new, notes
        raise ConflictError("the TUF metadata kept changing while the root was installed; retry")

    # -- targets ----------------------------------------------------------------------

    def check_targets(
        self,
        data: bytes | None,
        root: Metadata[Root],
        known: dict[str, Expected],
        required: dict[str, Expected],
        now: float,
    ) -> Metadata[Targets]:
        """Targets metadata the release manager signed, checked against the root and
        against what this server serves; raises a refusal that names the key needed."""
        needed = (
            f"the targets key {_keys_named(root.signed, 'targets')} "
            "(`nodekeeper release publish --targets-key FILE`)"
        )
        if data is None:
            raise InvalidRequestError(
                f"this control plane signs releases (TUF root v{root.signed.version}): the "
                f"publish needs targets metadata signed by {needed}"
            )
        md = parse(data, Targets, "targets")
        try:
            root.signed.verify_delegate("targets", md.signed_bytes, md.signatures)
        except UnsignedMetadataError:
            by = ", ".join(keyid_prefix(k) for k in md.signatures) or "no key"
            raise InvalidRequestError(
                f"the targets metadata is signed by {by}, not by {needed}"
            ) from None
        with self.store.engine.connect() as conn:
            current = tuf_store.latest(conn, "targets")
        expected_version = 1 if current is None else current.version + 1
        if md.signed.version != expected_version:
            raise ConflictError(
                f"targets v{md.signed.version} is not the next version (v{expected_version}): "
                "another publish signed targets meanwhile; run the command again (it "
                "starts from the current targets)"
            )
        if _epoch(md) <= now:
            raise InvalidRequestError("the targets metadata has already expired")
        if md.signed.delegations is not None:
            raise InvalidRequestError("targets delegations are not supported here")
        _check_entries(md.signed, known | required, required)
        return md

    def write_targets(self, conn: Connection, data: bytes, md: Metadata[Targets], now: float):
        """Store checked targets and sign a snapshot and timestamp over them, inside the
        caller's transaction (the publish's, so a refused release leaves nothing)."""
        root = self.root(conn)
        assert root is not None
        signers = self.signers(root.signed)
        tuf_store.insert(conn, "targets", md.signed.version, data, _epoch(md), now)
        self._sign_online(conn, root.signed, signers, now, force=True)

    def retrying(self, write: Callable[[], None], targets_version: int) -> None:
        """Run ``write`` (one transaction that stores targets ``targets_version``) again
        when it lost a race on a snapshot or timestamp version to a re-signing replica;
        a lost race on the targets version itself is a concurrent publish: 409."""
        for _attempt in range(RACE_RETRIES):
            try:
                write()
                return
            except sa.exc.IntegrityError:
                with self.store.engine.connect() as conn:
                    taken = tuf_store.get(conn, "targets", targets_version) is not None
                if taken:
                    raise ConflictError(
                        f"another publish signed targets v{targets_version} first; run the "
                        "command again (it starts from the current targets)"
                    ) from None
        raise ConflictError("the TUF metadata kept changing while this was stored; retry")

    # -- the online roles ------------------------------------------------------------

    def _sign_online(
        self,
        conn: Connection,
        root: Root,
        signers: dict[str, list[CryptoSigner]],
        now: float,
        *,
        force: bool,
    ) -> list[str]:
        """A new snapshot (when forced or due) and timestamp (when a snapshot was made or
        it is due), inside ``conn``'s transaction. Nothing before the first targets."""
        targets = tuf_store.latest(conn, "targets")
        if targets is None:
            return []
        done = []
        snap = tuf_store.latest(conn, "snapshot")
        snap_stale = snap is None or _names(snap.data, "targets.json") != targets.version
        if force or snap_stale or resign_due("snapshot", snap.expires, now):
            version = 1 if snap is None else snap.version + 1
            md = Metadata(Snapshot(version=version, expires=expires_at(now, "snapshot")))
            md.signed.meta["targets.json"] = MetaFile.from_data(
                targets.version, targets.data, HASHES
            )
            snap = self._sign_and_insert(conn, md, signers["snapshot"], now)
            done.append(f"snapshot v{version}")
        ts = tuf_store.latest(conn, "timestamp")
        ts_stale = ts is None or _names(ts.data, "snapshot.json") != snap.version
        if done or ts_stale or resign_due("timestamp", ts.expires, now):
            version = 1 if ts is None else ts.version + 1
            md = Metadata(Timestamp(version=version, expires=expires_at(now, "timestamp")))
            md.signed.snapshot_meta = MetaFile.from_data(snap.version, snap.data, HASHES)
            self._sign_and_insert(conn, md, signers["timestamp"], now)
            done.append(f"timestamp v{version}")
        return done

    def _sign_and_insert(
        self, conn: Connection, md: Metadata, signers: list[CryptoSigner], now: float
    ) -> tuf_store.Row:
        for signer in signers:
            md.sign(signer, append=True)
        data = md.to_bytes()
        role = md.signed.type
        tuf_store.insert(conn, role, md.signed.version, data, _epoch(md), now)
        return tuf_store.Row(role, md.signed.version, data, _epoch(md), now)

    def maintain(self, now: float) -> list[str]:
        """One round of the background loop: re-sign what is due (once across replicas:
        the loser's insert fails on (role, version) and its transaction rolls back), drop
        what no keeper can ask for, warn of what expires. Returns what this replica signed."""
        root = self.root()
        if root is None:
            return []
        done: list[str] = []
        problem = None
        try:
            signers = self.signers(root.signed)
            with self.store.engine.begin() as conn:
                done = self._sign_online(conn, root.signed, signers, now, force=False)
        except OnlineKeysMissing as exc:
            problem = exc.message
        except sa.exc.IntegrityError:
            done = []  # another replica signed this round's versions first: nothing to do
        if done:
            log.info("TUF: signed %s", ", ".join(done))
            tuf_store.prune(self.store, now)
        self._warn(now, problem)
        return done

    def _warn(self, now: float, problem: str | None) -> None:
        """Log each role's expiry warning when it appears and hourly while it lasts."""
        lines = {e.role: warning(e, now) for e in self.expiries()}
        if problem:
            lines["online keys"] = f"cannot re-sign snapshot and timestamp: {problem}"
        for what, line in lines.items():
            if line is None:
                self._warned.pop(what, None)
                continue
            said = self._warned.get(what)
            if said is None or said[0] != line.split(":")[0] or now - said[1] >= WARN_AGAIN_SECONDS:
                log.warning("TUF: %s", line)
                self._warned[what] = (line.split(":")[0], now)

    def problems(self, now: float) -> list[str]:
        """What the dashboard's banner says: each expiry warning, and missing online keys."""
        root = self.root()
        if root is None:
            return []
        out = [line for e in self.expiries() if (line := warning(e, now))]
        try:
            self.signers(root.signed)
        except OnlineKeysMissing as exc:
            out.insert(0, exc.message)
        return out

    def startup_problem(self) -> str | None:
        """Said loudly at start: a root in the database without the online keys it names
        (the server serves what it has; publishes are refused until the keys are there)."""
        root = self.root()
        if root is None:
            return None
        try:
            self.signers(root.signed)
        except OnlineKeysMissing as exc:
            return exc.message
        return None


def _names(data: bytes, name: str) -> int | None:
    return tuf_store._named(data, name)


def _check_root(current: Metadata[Root] | None, new: Metadata[Root]) -> None:
    if current is None:
        if new.signed.version != 1:
            raise InvalidRequestError(
                f"this control plane has no TUF root yet: upload version 1 first (got "
                f"v{new.signed.version}); keepers walk the chain from 1.root.json"
            )
        result = new.signed.get_root_verification_result(None, new.signed_bytes, new.signatures)
    else:
        want = current.signed.version + 1
        if new.signed.version != want:
            raise ConflictError(
                f"root v{new.signed.version} is not the next version: the server has "
                f"v{current.signed.version}, so the next is v{want}"
            )
        result = new.signed.get_root_verification_result(
            current.signed, new.signed_bytes, new.signatures
        )
    if not result.verified:
        raise InvalidRequestError(
            f"root v{new.signed.version} is not signed by enough keys: {describe_missing(result)}"
        )


def describe_missing(result) -> str:
    """Which root keys are still missing, for the previous root (first) and the new one."""
    parts = []
    for label, r in (
        ("the previous root's keys", result.first),
        ("the new root's keys", result.second),
    ):
        if not r.verified:
            unsigned = ", ".join(keyid_prefix(k) for k in r.unsigned)
            parts.append(
                f"{label}: {len(r.signed)} of {r.threshold} signed, {r.missing} more needed "
                f"from [{unsigned}]"
            )
    return "; ".join(parts) or "complete"


def _check_entries(
    signed: Targets, allowed: dict[str, Expected], required: dict[str, Expected]
) -> None:
    """Every entry names an artifact this server serves, as it is; the new release's
    artifacts are all there."""
    for path in required:
        if path not in signed.targets:
            raise InvalidRequestError(
                f"the signed targets has no entry for {path}: sign every artifact of the release"
            )
    for path, entry in signed.targets.items():
        want = allowed.get(path)
        if want is None:
            raise InvalidRequestError(
                f"the signed targets names {path}, which is no artifact of a published release"
            )
        got_custom = entry.unrecognized_fields.get("custom")
        wrong = []
        if entry.length != want.length:
            wrong.append(f"length {entry.length} != {want.length}")
        if entry.hashes != {"sha256": want.sha256}:
            wrong.append(f"hashes {entry.hashes} != sha256 {want.sha256}")
        if got_custom != want.custom:
            wrong.append(f"custom {got_custom} != {want.custom}")
        if wrong:
            raise InvalidRequestError(
                f"the signed entry for {path} does not match the artifact: {'; '.join(wrong)}"
            )
