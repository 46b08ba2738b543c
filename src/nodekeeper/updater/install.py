"""Unpack and preflight as one step: the end of the fetch → install half of an update.

After ``install_checked`` returns, ``versions/<process>/<version>`` is complete, durable
and has said the announced version; the old node has not been touched. When preflight
fails, the install is discarded before the error is raised, so nothing that failed is
left where a later step could start it.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from pathlib import Path

from .errors import PreflightFailed, StorageError
from .preflight import DEFAULT_TIMEOUT, preflight
from .unpack import DEFAULT_UNPACK_MARGIN, Installed, discard, unpack


def install_checked(
    zip_path: Path,
    versions_dir: Path,
    process: str,
    version: str,
    *,
    python: str = sys.executable,
    preflight_timeout: float = DEFAULT_TIMEOUT,
    free_space_margin: int = DEFAULT_UNPACK_MARGIN,
    before_preflight: Callable[[], None] | None = None,
) -> Installed:
    """``unpack`` then ``preflight``. Raises what they raise; on PreflightFailed the
    install has been discarded. ``before_preflight`` runs between the two (the state
    machine journals its PREFLIGHT step there)."""
    installed = unpack(
        zip_path, versions_dir, process, version, free_space_margin=free_space_margin
    )
    if before_preflight is not None:
        before_preflight()
    try:
        preflight(installed, version, python=python, timeout=preflight_timeout)
    except PreflightFailed:
        # The preflight failure is what to report; an install the disk refuses to move
        # aside is removed by the next sweep (it is not current, previous or in flight).
        with contextlib.suppress(StorageError):
            discard(installed.path)
        raise
    return installed
