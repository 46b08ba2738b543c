"""Unpack and preflight as one step: the end of the fetch → install half of an update.

After ``install_checked`` returns, ``versions/<process>/<version>`` is complete, durable
and has said the announced version; the old node has not been touched. When preflight
fails, the install is discarded before the error is raised, so nothing that failed is
left where a later step could start it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .errors import PreflightFailed
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
) -> Installed:
    """``unpack`` then ``preflight``. Raises what they raise; on PreflightFailed the
    install has been discarded."""
    installed = unpack(
        zip_path, versions_dir, process, version, free_space_margin=free_space_margin
    )
    try:
        preflight(installed, version, python=python, timeout=preflight_timeout)
    except PreflightFailed:
        discard(installed.path)
        raise
    return installed
