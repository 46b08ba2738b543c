"""TUF on the keeper's side (decision 085): refresh the metadata, find the signed entry.

``signed_target`` runs tuf.ngclient's client workflow (root chain → timestamp →
snapshot → targets) against the control plane's metadata and returns the signed entry
of one artifact, or raises:

- ``SignatureCheckFailed`` (report ``verification_failed``, ``check`` says which) when
  the metadata fails a check: a signature, a rollback, an expiry, a mix-and-match,
  endless data. TUF's messages are kept, after one sentence saying which role failed
  which check and what that usually means;
- ``DownloadFailed`` (or ``DownloadCancelled``) when the metadata could not be fetched
  (network, HTTP status, deadline): like any download failure, retried next cycle. Only
  a file *longer* than its bound is an attack (``too_large``), not a network error.

The metadata is fetched with the keeper's own HTTP client (``KeeperFetcher``: proxies,
CA bundle, the keeper stopping, a whole-request deadline), never tuf's default urllib3
fetcher, and tuf never downloads the artifact itself: the announcement's URL may be a
CDN that does not follow TUF's target naming, and ``download.py`` has resume, the speed
floor, the free-space check and the cancel that tuf's ``download_target`` lacks.

One ``Updater`` per check: its clock (``reference_time``) is read when it is made, and a
refresh happens once per ``Updater``. tuf keeps one writer per metadata directory; the
node's update and the keeper's own run in the same process, so every refresh of one
directory holds that directory's lock (``_lock_for``).

Imported only when a fetch has a trusted root: a keeper without one never loads tuf.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Generator, Iterator
from typing import IO

import httpx
from tuf.api import exceptions as tufe
from tuf.ngclient import FetcherInterface, Updater, UpdaterConfig

from .checker import request_deadline_of
from .errors import DownloadCancelled, DownloadFailed, SignatureCheckFailed, UpdateError
from .netabort import Deadline, KeeperStopping, NetworkAbort
from .trust import FIX_ROOT, SignedRelease, SignedTarget, TrustSettings

CHUNK = 64 * 1024

# Tight bounds (endless data): real files are a few KiB. Snapshot and targets are bounded
# by the length their parent signs when it signs one (our server does); these bounds
# apply when it does not. Targets grows by ~300 bytes per artifact: 5 MB is far ahead.
UPDATER_CONFIG = UpdaterConfig(
    max_root_rotations=64,
    root_max_length=64 * 1024,
    timestamp_max_length=4 * 1024,
    snapshot_max_length=64 * 1024,
    targets_max_length=5_000_000,
    app_user_agent=None,
)

_ROLE = re.compile(r"\b(root|timestamp|snapshot|targets)\b")
_ROLLBACK = re.compile(r"^New |^Expected \S+\.json version ")
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


class KeeperFetcher(FetcherInterface):
    """tuf.ngclient's network access through the keeper's ``httpx`` client.

    Raw bytes (``iter_raw`` with ``Accept-Encoding: identity``): tuf counts what it
    receives against the metadata's bound, which must be the bytes on the wire, not a
    decompressed stream (a gzip bomb). HTTP errors are ``DownloadHTTPError`` with their
    status (tuf reads the 404 after the newest root as "no newer root")."""

    def __init__(self, client: httpx.Client, seconds: float) -> None:
        self.client = client
        self.seconds = seconds
        # One deadline for the whole refresh (``running``): its four or five small
        # requests together must end within ``seconds``, whatever the server does.
        self.deadline = Deadline(seconds)
        self.last_url: str | None = None
        self._streams: list[Generator[bytes, None, None]] = []

    def _fetch(self, url: str) -> Iterator[bytes]:
        self.last_url = url
        stream = self._stream(url)
        self._streams.append(stream)
        return stream

    @contextlib.contextmanager
    def download_file(self, url: str, max_length: int) -> Iterator[IO[bytes]]:
        # tuf stops iterating a body that passes its bound; close our generator at once so
        # the connection and the deadline's timer end now, not when it is collected.
        try:
            with super().download_file(url, max_length) as file:
                yield file
        finally:
            streams, self._streams = self._streams, []
            for stream in streams:
                stream.close()

    def _stream(self, url: str) -> Generator[bytes, None, None]:
        guard = self.deadline.abort
        try:
            with self.client.stream(
                "GET",
                url,
                headers={"Accept-Encoding": "identity", "Accept": "application/json"},
                extensions={"trace": guard.trace},
            ) as response:
                guard.watch_response(response)
                if response.status_code >= 400:
                    raise tufe.DownloadHTTPError(
                        f"{url} answered HTTP {response.status_code}", response.status_code
                    )
                yield from response.iter_raw(CHUNK)
        except httpx.TimeoutException as exc:
            raise tufe.SlowRetrievalError(f"{url} timed out ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            if self.deadline.expired:
                raise tufe.SlowRetrievalError(
                    f"{url} did not finish within {self.seconds:g} s "
                    "(update.request_deadline_seconds)"
                ) from exc
            raise tufe.DownloadError(f"{url}: {str(exc) or type(exc).__name__}") from exc


def signed_target(client: httpx.Client, release: SignedRelease) -> SignedTarget | None:
    """Refresh the metadata and return the signed entry of ``release`` (None: not
    signed). Raises SignatureCheckFailed or DownloadFailed (module docstring)."""
    trust = release.trust
    fetcher = KeeperFetcher(client, request_deadline_of(client))
    with _lock_for(trust):
        updater = _updater(trust, fetcher)
        try:
            with fetcher.deadline.running():
                updater.refresh()
                info = updater.get_targetinfo(release.path)  # delegations would fetch
        except (tufe.RepositoryError, tufe.DownloadError) as exc:
            raise refusal(exc, trust, fetcher.last_url, client) from None
        except OSError as exc:
            raise _cache_failure(trust, exc) from None
    if info is None:
        return None
    return SignedTarget(
        path=info.path,
        length=info.length,
        sha256=info.hashes.get("sha256"),
        custom=info.unrecognized_fields.get("custom"),
    )


def _updater(trust: TrustSettings, fetcher: KeeperFetcher) -> Updater:
    """A fresh ``Updater`` (its clock is read now) starting from the shipped root, always:
    the roots that rotated since are read from the cache's root_history and each is
    verified by the one before it, so trust rests on the shipped root alone (read-only
    under Program Files or /opt), never on the writable state dir's ``root.json`` (which
    tuf trusts as is when no bootstrap is given; Wine 8 does not even create that
    symlink, decision 086). The cost is a few ms per check: one root file written and a
    signature check per rotation."""
    try:
        root = trust.trusted_root.read_bytes()
    except OSError as exc:
        raise SignatureCheckFailed(
            f"signed releases: cannot read the trusted root {trust.trusted_root} "
            f"({exc.strerror or exc}); {FIX_ROOT}",
            check="trusted_root",
        ) from None
    try:
        trust.metadata_dir.mkdir(parents=True, exist_ok=True)
        # Verifies the shipped root against itself (the config checked it at start; the
        # file may have changed since).
        return Updater(
            metadata_dir=str(trust.metadata_dir),
            metadata_base_url=trust.metadata_url,
            fetcher=fetcher,
            config=UPDATER_CONFIG,
            bootstrap=root,
        )
    except tufe.RepositoryError as exc:
        raise SignatureCheckFailed(
            f"signed releases: the trusted root {trust.trusted_root} is not a valid, "
            f"self-signed TUF root ({type(exc).__name__}: {exc}); {FIX_ROOT}",
            check="trusted_root",
        ) from None
    except OSError as exc:
        raise _cache_failure(trust, exc) from None


def _cache_failure(trust: TrustSettings, exc: OSError) -> SignatureCheckFailed:
    return SignatureCheckFailed(
        f"signed releases: cannot keep TUF metadata in {trust.metadata_dir}: {exc.strerror or exc}",
        check="trusted_root",
    )


def _lock_for(trust: TrustSettings) -> threading.Lock:
    key = str(trust.metadata_dir.resolve())
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


_EXPLAIN = {
    "signature": "it is not signed by enough of the keys the trusted root names for it (a "
    "compromised server or mirror, or keys changed without a new signed root)",
    "rollback": "it is older than the metadata this keeper already saw (a replayed old copy)",
    "expired": "it has expired (a frozen mirror, or the control plane stopped re-signing "
    "it: check its online keys, and this machine's clock)",
    "inconsistent": "it is not the version or the bytes its parent metadata names (metadata "
    "mixed from different times)",
    "too_large": "it is larger than a keeper accepts (endless data)",
    "invalid_metadata": "it is not valid TUF metadata",
}


def refusal(
    exc: Exception, trust: TrustSettings, last_url: str | None, client: httpx.Client
) -> UpdateError:
    """The typed failure for an exception of tuf's refresh (pure apart from reading the
    client's abort flag)."""
    if isinstance(exc, tufe.DownloadError) and not isinstance(
        exc, tufe.DownloadLengthMismatchError
    ):
        return _network_failure(exc, trust, client)
    check = classify(exc)
    role = role_of(str(exc), last_url)
    return SignatureCheckFailed(
        f"signed releases: the {role} metadata from {trust.metadata_url} failed the "
        f"{check} check: {_EXPLAIN[check]} (TUF: {exc}); nothing was downloaded",
        check=check,
        role=role,
    )


def classify(exc: Exception) -> str:
    """Which check a tuf exception is (``errors.SIGNATURE_CHECKS``)."""
    if isinstance(exc, tufe.DownloadLengthMismatchError):
        return "too_large"
    if isinstance(exc, tufe.UnsignedMetadataError):
        return "signature"
    if isinstance(exc, tufe.ExpiredMetadataError):
        return "expired"
    if isinstance(exc, tufe.BadVersionNumberError):
        # "New timestamp version 1 must be >= 2", "New snapshot version must be >= ...",
        # "Expected targets.json version 3, got 2." (the snapshot names an older
        # targets): older than seen. "Expected targets v1, got v2." and "Expected
        # snapshot version ...": not the version the parent names (mix-and-match).
        is_rollback = isinstance(exc, tufe.EqualVersionNumberError) or _ROLLBACK.search(str(exc))
        return "rollback" if is_rollback else "inconsistent"
    if isinstance(exc, tufe.LengthOrHashMismatchError):
        return "inconsistent"
    return "invalid_metadata"


def role_of(message: str, last_url: str | None) -> str:
    """The role a tuf message names, else the one whose file was fetched last."""
    found = _ROLE.search(message) or _ROLE.search((last_url or "").rsplit("/", 1)[-1])
    return found.group(1) if found else "root"


def _network_failure(
    exc: tufe.DownloadError, trust: TrustSettings, client: httpx.Client
) -> DownloadFailed:
    stopping = getattr(client, "abort", None)
    cause = exc.__cause__
    if isinstance(cause, KeeperStopping) or (
        isinstance(stopping, NetworkAbort) and stopping.aborted
    ):
        return DownloadCancelled(
            f"the signed-release check at {trust.metadata_url} was cut short: the keeper "
            "is stopping"
        )
    status = exc.status_code if isinstance(exc, tufe.DownloadHTTPError) else None
    return DownloadFailed(
        f"cannot fetch the signed-release metadata at {trust.metadata_url}: {exc}; the next "
        "attempt tries again",
        status=status,
    )
