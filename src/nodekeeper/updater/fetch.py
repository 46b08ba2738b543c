"""Download and verification composed, plus the downloads directory's housekeeping.

``fetch_verified`` is the one fetch path, for the node's state machine and the keeper's
own update alike: it reuses a verified zip left by an earlier cycle (re-hashed first:
nothing on disk is trusted across a crash), otherwise resumes or starts the download and
verifies it. ``entering`` tells the caller when the work moves to verifying (or back to
downloading, when a kept zip changed on disk), so the state machine can journal its
DOWNLOAD and VERIFY steps before their side effects.

With a trusted root (``signed``, decision 085) the control plane's TUF metadata is
refreshed first and the artifact must be signed, with the announced length and sha256,
before anything is downloaded or a kept zip reused; the download is then bounded by and
compared with the *signed* length and sha256 (the streamed hash: the 64 MiB are not read
twice). Without one, the announcement's size and sha256 are the only gate, as before.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Literal

import httpx

from nodekeeper.version.schema import Artifact

from .download import DEFAULT_FREE_SPACE_MARGIN, SpeedFloor, download
from .errors import VerificationFailed
from .trust import SignedRelease
from .verify import verified_path, verify_download, verify_file

log = logging.getLogger("nodekeeper.updater")

FetchStep = Literal["download", "verify"]
_DEFAULT_FLOOR = SpeedFloor()


def _nothing(step: FetchStep) -> None:
    pass


def fetch_verified(
    client: httpx.Client,
    artifact: Artifact,
    part: Path,
    *,
    free_space_margin: int = DEFAULT_FREE_SPACE_MARGIN,
    cancel: threading.Event | None = None,
    progress: Callable[[int, int], None] | None = None,
    speed_floor: SpeedFloor = _DEFAULT_FLOOR,
    entering: Callable[[FetchStep], None] = _nothing,
    signed: SignedRelease | None = None,
) -> Path:
    """The path of a zip whose size and sha256 are the announced ones.

    The caller is in its "download" step when it calls; ``entering("verify")`` is called
    before any whole file is hashed, ``entering("download")`` before a download that
    follows a kept zip which no longer matched. Raises what ``download``,
    ``verify_download`` and ``entering`` raise. An earlier verified zip that no longer
    matches (a power cut, a disk error) is deleted and fetched again here. With
    ``signed``, also SignatureCheckFailed (nothing downloaded) and DownloadFailed (the
    metadata could not be fetched).
    """
    if signed is not None:
        artifact = _signed_artifact(client, signed, artifact)
    final = verified_path(part)
    if final.exists():
        entering("verify")
        try:
            verify_file(final, artifact)
            return final
        except VerificationFailed:
            # Deleted by verify_file; fetch it again below.
            log.warning("the verified download %s changed on disk; fetching it again", final)
            entering("download")
    if part.exists():
        log.info("resuming the download of %s from %d bytes", part.name, part.stat().st_size)
    result = download(
        client,
        artifact,
        part,
        free_space_margin=free_space_margin,
        cancel=cancel,
        progress=progress,
        speed_floor=speed_floor,
    )
    entering("verify")
    return verify_download(result, artifact)


def _signed_artifact(client: httpx.Client, signed: SignedRelease, artifact: Artifact) -> Artifact:
    """The announced artifact once TUF vouches for it, with the signed length and sha256
    (equal to the announced ones) for the download's bound and the final comparison."""
    from .signed import signed_target  # tuf loads only when a trusted root is set
    from .trust import compare_signed, signed_artifact

    found = signed_target(client, signed)
    compare_signed(found, signed, artifact)
    assert found is not None
    log.info(
        "signed releases: %s is signed (%d bytes, sha256 %s); downloading it",
        found.path,
        found.length,
        found.sha256,
    )
    return signed_artifact(found, artifact)


def prune_downloads(downloads_dir: Path, keep: Iterable[Path] = ()) -> list[Path]:
    """Delete every file in ``downloads_dir`` except ``keep`` (e.g. after an install
    passed preflight, or when a newer version made a partial download pointless).
    Returns the files that could not be deleted (held open on Windows): retry later."""
    keep_set = {Path(p).resolve() for p in keep}
    stuck: list[Path] = []
    try:
        entries = list(Path(downloads_dir).iterdir())
    except FileNotFoundError:
        return stuck
    for entry in entries:
        if entry.resolve() in keep_set or not entry.is_file():
            continue
        try:
            entry.unlink()
        except FileNotFoundError:
            pass
        except OSError:
            stuck.append(entry)
    return stuck
