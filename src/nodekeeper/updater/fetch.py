"""Download and verification composed, plus the downloads directory's housekeeping.

``fetch_verified`` is the call the state machine makes for its "downloading" step: it
reuses a verified zip left by an earlier cycle (re-hashed first: nothing on disk is
trusted across a crash), otherwise resumes or starts the download and verifies it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from pathlib import Path

import httpx

from nodekeeper.version.schema import Artifact

from .download import DEFAULT_FREE_SPACE_MARGIN, download
from .errors import VerificationFailed
from .verify import verified_path, verify_download, verify_file


def fetch_verified(
    client: httpx.Client,
    artifact: Artifact,
    part: Path,
    *,
    free_space_margin: int = DEFAULT_FREE_SPACE_MARGIN,
    cancel: threading.Event | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """The path of a zip whose size and sha256 are the announced ones.

    Raises what ``download`` and ``verify_download`` raise. An earlier verified zip that
    no longer matches (a power cut, a disk error) is deleted and fetched again here.
    """
    final = verified_path(part)
    if final.exists():
        try:
            verify_file(final, artifact)
            return final
        except VerificationFailed:
            pass  # deleted by verify_file; fetch it again below
    result = download(
        client,
        artifact,
        part,
        free_space_margin=free_space_margin,
        cancel=cancel,
        progress=progress,
    )
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
