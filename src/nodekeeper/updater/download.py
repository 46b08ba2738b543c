"""Streaming an artifact to ``downloads/<name>.part``, resumable, bounded, hashed on the way.

One job: get the announced number of bytes onto the disk and say what their sha256 is.
Whether they are the right bytes is ``verify.py``'s decision, except that a server
sending more than the announced size is cut off here at once (through
``verify.check_within_size``), so no server can fill the disk or the keeper's time.

- **Resume.** An interrupted transfer leaves ``<name>.part``; the next call hashes what
  is there and asks for the rest with ``Range: bytes=N-``. A server that ignores Range
  (200) is read from byte 0 over the same response; a 206 for another offset or another
  total size, or a 416, means the partial file does not belong to the file the server
  has now, so it is deleted and the download starts again from zero (once per call).
- **No trust in the partial file.** Its bytes are re-hashed on resume rather than a
  saved hash state reused, so a ``.part`` damaged by a power cut is caught by the final
  sha256 check. For the same reason the file is not fsynced: nothing trusts it before
  ``verify`` (after a crash the state machine re-hashes with ``verify.verify_file``).
- **Bounded.** Connect and read timeouts (a stalled server fails the attempt instead of
  hanging it), a speed floor (a server trickling bytes just inside the read timeout
  fails it too), at most ``size`` bytes accepted, free space checked first.
- **Environment.** Proxies come from the environment (``HTTPS_PROXY``, ``NO_PROXY``...,
  httpx ``trust_env``); TLS is verified against the system's roots or a configured CA
  bundle; redirects are followed (the integrity comes from the sha256, not the host).

Blocking by design: the keeper runs it with ``asyncio.to_thread`` and stops it through
``cancel`` (checked between chunks), so the event loop never waits on the disk. A keeper
that stops does not wait for the next chunk: the client's ``abort`` (``netabort``) shuts
the socket down, which wakes a read blocked on a silent server at once
(``DownloadCancelled``, the ``.part`` kept).
"""

from __future__ import annotations

import hashlib
import re
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from nodekeeper.backoff import parse_retry_after
from nodekeeper.version.schema import Artifact

from .errors import (
    DownloadCancelled,
    DownloadFailed,
    OutOfSpace,
    VerificationFailed,
    storage_error,
)
from .netabort import DEFAULT_REQUEST_DEADLINE, KEEPER_SHUTDOWN, NetworkAbort, request_hook
from .storage import MiB, check_free_space, remove_file
from .verify import PART_SUFFIX, check_served_size, check_within_size

# Kept free beyond the artifact itself: the unpacked copy, the node's database and logs
# share the disk, and a download that leaves 0 bytes free would hurt the running node.
DEFAULT_FREE_SPACE_MARGIN = 64 * MiB
_HASH_CHUNK = MiB
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


@dataclass(frozen=True)
class SpeedFloor:
    """A transfer slower than ``bytes_per_second`` over ``window`` seconds is given up and
    resumed on the next cycle. The read timeout alone lets a server that sends a byte
    every 29 s hold an update forever; the default floor (1 KiB/s over a minute) is far
    below any real home line."""

    bytes_per_second: float = 1024.0
    window: float = 60.0

    def too_slow(self, received: int, elapsed: float) -> bool:
        """Pure: ``received`` bytes in ``elapsed`` seconds of one window."""
        return elapsed >= self.window and received < self.bytes_per_second * elapsed


@dataclass(frozen=True)
class DownloadSettings:
    """Network settings of the keeper's HTTP client (checks and downloads)."""

    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    ca_bundle: Path | None = None  # PEM file of extra/private roots; None: system roots
    free_space_margin: int = DEFAULT_FREE_SPACE_MARGIN
    speed_floor: SpeedFloor = SpeedFloor()
    # Whole-request deadline of a check (checker.fetch_announcement); downloads have the
    # speed floor instead, since a big artifact on a slow line may take an hour.
    request_deadline: float = DEFAULT_REQUEST_DEADLINE
    # What ends every request of this client at once: the keeper stopping.
    abort: NetworkAbort = KEEPER_SHUTDOWN


class KeeperClient(httpx.Client):
    """An ``httpx.Client`` whose requests end when ``abort`` fires (their sockets are shut
    down, see ``netabort``), carrying the check deadline it was configured with."""

    def __init__(self, *, request_deadline: float, abort: NetworkAbort, **kwargs: Any) -> None:
        super().__init__(event_hooks={"request": [request_hook(abort)]}, **kwargs)
        self.request_deadline = request_deadline
        self.abort = abort


def make_client(settings: DownloadSettings = DownloadSettings()) -> KeeperClient:
    """The keeper's HTTP client: timeouts, TLS verified, proxies from the environment,
    every request ended at once when the keeper stops."""
    verify: ssl.SSLContext | bool = True
    if settings.ca_bundle is not None:
        try:
            verify = ssl.create_default_context(cafile=str(settings.ca_bundle))
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"cannot load the CA bundle {settings.ca_bundle}: {exc}") from None
    timeout = httpx.Timeout(
        connect=settings.connect_timeout,
        read=settings.read_timeout,
        write=settings.read_timeout,
        pool=settings.connect_timeout,
    )
    return KeeperClient(
        request_deadline=settings.request_deadline,
        abort=settings.abort,
        timeout=timeout,
        verify=verify,
        trust_env=True,
        follow_redirects=True,
    )


def artifact_file_name(process: str, version: str, platform: str) -> str:
    """``storagenode-1.2.3-linux_amd64.zip``: one name per (process, version, platform),
    so a partial file is only ever resumed into the same artifact."""
    return f"{process}-{version}-{platform}.zip"


def part_path(downloads_dir: Path, process: str, version: str, platform: str) -> Path:
    return Path(downloads_dir) / (artifact_file_name(process, version, platform) + PART_SUFFIX)


@dataclass(frozen=True)
class Download:
    """A finished transfer: ``size`` bytes at ``path`` whose sha256 is ``sha256``.
    ``resumed_from`` bytes came from an earlier attempt; ``fetched`` is how many body
    bytes this call received over the network (all responses together)."""

    path: Path
    size: int
    sha256: str
    resumed_from: int
    fetched: int


class _Restart(Exception):
    """The partial file does not match what the server has: start from zero."""


class _Transfer:
    """The state of one call: the partial file's length and hash, and the counters."""

    def __init__(
        self,
        client: httpx.Client,
        artifact: Artifact,
        part: Path,
        cancel: threading.Event | None,
        progress: Callable[[int, int], None] | None,
        speed_floor: SpeedFloor,
    ) -> None:
        self.speed_floor = speed_floor
        self.client = client
        self.artifact = artifact
        self.part = part
        self.cancel = cancel
        self.progress = progress
        self.have = 0
        self.digest = hashlib.sha256()
        self.fetched = 0
        self.resumed_from = 0

    def load_partial(self) -> None:
        """Hash what an earlier attempt left. A file longer than the artifact cannot be a
        prefix of it and is dropped."""
        try:
            size = self.part.stat().st_size
        except FileNotFoundError:
            return
        except OSError as exc:
            raise storage_error(exc, self.part, "read the partial download") from None
        if size > self.artifact.size:
            self.start_over()
            return
        try:
            with self.part.open("rb") as f:
                while chunk := f.read(_HASH_CHUNK):
                    self.digest.update(chunk)
                    self.have += len(chunk)
        except OSError as exc:
            raise storage_error(exc, self.part, "read the partial download") from None
        self.resumed_from = self.have

    def start_over(self) -> None:
        remove_file(self.part)
        self.have = 0
        self.resumed_from = 0
        self.digest = hashlib.sha256()

    def fetch(self) -> None:
        """One GET (ranged when there is a partial file) appended to the ``.part``."""
        url = self.artifact.url
        # identity: the byte counts, the Range offsets and the sha256 are all about the
        # file as published, never a compressed transfer encoding of it.
        headers = {"Accept-Encoding": "identity"}
        if self.have:
            headers["Range"] = f"bytes={self.have}-"
        try:
            with self.client.stream("GET", url, headers=headers) as response:
                start = self._start_offset(response)
                if start == 0 and self.have:
                    self.start_over()  # the server ignored Range: take the file from 0
                self._check_length(response)
                self._write_body(response)
        except httpx.HTTPError as exc:
            abort = getattr(self.client, "abort", None)
            if isinstance(abort, NetworkAbort) and abort.aborted:
                raise DownloadCancelled(
                    f"download of {url} cut short after {self.have} bytes: {abort.reason}; "
                    "the next attempt resumes",
                    received=self.have,
                ) from None
            raise self._failure(exc) from None
        if self.have < self.artifact.size:
            # A body delimited by the connection closing (no Content-Length) ended early.
            raise DownloadFailed(
                f"the server ended the download of {url} after {self.have} of "
                f"{self.artifact.size} bytes; the next attempt resumes",
                received=self.have,
            )

    def _failure(self, exc: httpx.HTTPError) -> DownloadFailed:
        url = self.artifact.url
        if isinstance(exc, httpx.TimeoutException):
            return DownloadFailed(
                f"download of {url} stalled after {self.have} of {self.artifact.size} bytes "
                f"({type(exc).__name__}); the next attempt resumes",
                received=self.have,
            )
        return DownloadFailed(
            f"download of {url} failed after {self.have} of {self.artifact.size} bytes: "
            f"{str(exc) or type(exc).__name__}; the next attempt resumes",
            received=self.have,
        )

    def _start_offset(self, response: httpx.Response) -> int:
        status = response.status_code
        if status == 200:
            return 0
        if status == 206 and self.have:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if (
                match is None
                or int(match.group(1)) != self.have
                or match.group(3) not in ("*", str(self.artifact.size))
            ):
                raise _Restart
            return self.have
        if status == 416 and self.have:
            raise _Restart
        retry_after = parse_retry_after(response.headers.get("Retry-After"), time.time())
        raise DownloadFailed(
            f"download of {self.artifact.url} answered HTTP {status}",
            status=status,
            retry_after=retry_after,
            received=self.have,
        )

    def _check_length(self, response: httpx.Response) -> None:
        """Refuse before reading when Content-Length already says the file is another
        size: a whole file (200) must be exactly the announced size, a range (206) must
        not go past it. Without this, a server whose copy is shorter would look like an
        interrupted transfer and be "resumed" every cycle forever."""
        length = response.headers.get("Content-Length")
        if length is None or not length.isdigit():
            return
        if response.status_code == 200:
            check_served_size(int(length), self.artifact, self.part)
        else:
            check_within_size(self.have + int(length), self.artifact, self.part)

    def _write_body(self, response: httpx.Response) -> None:
        mode = "ab" if self.have else "wb"
        window_start, window_bytes = time.monotonic(), 0
        try:
            with self.part.open(mode) as f:
                for chunk in response.iter_raw():
                    if self.cancel is not None and self.cancel.is_set():
                        raise DownloadCancelled(
                            f"download of {self.artifact.url} cancelled after {self.have} "
                            "bytes; the next attempt resumes",
                            received=self.have,
                        )
                    check_within_size(self.have + len(chunk), self.artifact, self.part)
                    f.write(chunk)
                    self.digest.update(chunk)
                    self.have += len(chunk)
                    self.fetched += len(chunk)
                    if self.progress is not None:
                        self.progress(self.have, self.artifact.size)
                    window_bytes += len(chunk)
                    elapsed = time.monotonic() - window_start
                    if self.speed_floor.too_slow(window_bytes, elapsed):
                        raise DownloadFailed(
                            f"download of {self.artifact.url} too slow: {window_bytes} bytes "
                            f"in {elapsed:.0f} s, under the floor of "
                            f"{self.speed_floor.bytes_per_second:.0f} bytes/s; the next "
                            "attempt resumes",
                            received=self.have,
                        )
                    if elapsed >= self.speed_floor.window:
                        window_start, window_bytes = time.monotonic(), 0
        except VerificationFailed:
            # Deleted by the check already, except on Windows, where an open file cannot
            # be deleted: the file is closed now.
            remove_file(self.part)
            raise
        except OSError as exc:
            error = storage_error(exc, self.part, "write the download")
            if isinstance(error, OutOfSpace):
                # Free what we took: the node shares this disk, and the next cycle
                # checks the space again before starting over.
                remove_file(self.part)
            raise error from None


def download(
    client: httpx.Client,
    artifact: Artifact,
    part: Path,
    *,
    free_space_margin: int = DEFAULT_FREE_SPACE_MARGIN,
    cancel: threading.Event | None = None,
    progress: Callable[[int, int], None] | None = None,
    speed_floor: SpeedFloor = SpeedFloor(),
) -> Download:
    """Fetch ``artifact.url`` into ``part`` (see ``part_path``), resuming what is there.

    Returns when ``artifact.size`` bytes are on disk; the caller then calls
    ``verify.verify_download``. Raises:

    - OutOfSpace before any request when the disk lacks size + ``free_space_margin``
      (minus what is already downloaded), or on ENOSPC while writing (``.part`` deleted);
    - ReadOnlyFileSystem / StorageError when the directory or file cannot be written;
    - DownloadFailed for network errors, timeouts, a transfer under ``speed_floor``,
      HTTP errors and bodies cut short (``.part`` kept: the next call resumes);
    - DownloadCancelled when ``cancel`` is set (``.part`` kept);
    - VerificationFailed when the server sends more than ``artifact.size`` bytes, or
      announces another size in its headers (``.part`` deleted).
    """
    part = Path(part)
    try:
        part.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise storage_error(exc, part.parent, "create the downloads directory") from None
    transfer = _Transfer(client, artifact, part, cancel, progress, speed_floor)
    transfer.load_partial()
    if transfer.have < artifact.size:
        needed = artifact.size - transfer.have + free_space_margin
        check_free_space(part.parent, needed, f"downloading {artifact.size} bytes")
        try:
            transfer.fetch()
        except _Restart:
            # Without a partial file there is no Range header, so a second _Restart
            # cannot happen: a 206/416 to a plain GET is a DownloadFailed.
            transfer.start_over()
            transfer.fetch()
    return Download(
        path=part,
        size=transfer.have,
        sha256=transfer.digest.hexdigest(),
        resumed_from=transfer.resumed_from,
        fetched=transfer.fetched,
    )
