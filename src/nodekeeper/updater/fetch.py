"""Download and verification composed, plus the downloads directory's housekeeping.

``fetch_verified`` is the one fetch path, for the node's state machine and the keeper's
own update alike: it reuses a verified zip left by an earlier cycle (re-hashed first:
nothing on disk is trusted across a crash), otherwise resumes or starts the download and
verifies it. ``entering`` tells the caller when the work moves to verifying (or back to
downloading, when a kept zip changed on disk), so the state machine can journal its
DOWNLOAD and VERIFY steps before their side effects.
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
) -> Path:
    """The path of a zip whose size and sha256 are the announced ones.

    The caller is in its "download" step when it calls; ``entering("verify")`` is called
    before any whole file is hashed, ``entering("download")`` before a download that
    follows a kept zip which no longer matched. Raises what ``download``,
    ``verify_download`` and ``entering`` raise. An earlier verified zip that no longer
    matches (a power cut, a disk error) is deleted and fetched again here.
    """
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
