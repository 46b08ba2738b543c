"""``state/update.json``: the update state, written whole and durably before each step.

Write (``nodekeeper.durable``): a temp file in the same directory, fsync, ``os.replace``
over the old file, fsync the directory. A power cut at any instant leaves either the old
or the new file, never a mix, and once ``write`` returns the new state survives a crash.
The step a state names is written *before* its side effects begin, so recovery always
knows what may be half done.

A file that cannot be parsed (a disk that lied about fsync, a hand edit) is moved aside
to ``update.json.corrupt-<time>`` and reported by the caller; the keeper then starts from
what it can see on disk (``recovery.state_from_disk``) instead of refusing to run.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

from nodekeeper.durable import remove_temp_files, write_durably

from .state import UpdateState

FILE_NAME = "update.json"


class JournalCorrupt(Exception):
    """The journal exists but does not hold a valid state; it was moved to ``moved_to``."""

    def __init__(self, message: str, moved_to: Path | None) -> None:
        super().__init__(message)
        self.moved_to = moved_to


class Journal:
    def __init__(self, state_dir: Path) -> None:
        self.directory = Path(state_dir)
        self.path = self.directory / FILE_NAME

    def read(self) -> UpdateState | None:
        """The last state written, or None when there is none. Raises JournalCorrupt
        (after moving the file aside) when it cannot be understood."""
        with contextlib.suppress(OSError):  # a write cut short by a crash left its temp file
            remove_temp_files(self.directory)
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return UpdateState.from_json(json.loads(raw))
        except (ValueError, KeyError, TypeError) as exc:
            moved = self.path.with_name(f"{FILE_NAME}.corrupt-{int(time.time())}")
            try:
                os.replace(self.path, moved)
            except OSError:
                moved = None
            raise JournalCorrupt(f"{self.path} is not a valid update state: {exc}", moved) from None

    def write(self, state: UpdateState) -> None:
        """Durably replace the journal with ``state``. Raises OSError (disk full,
        read-only): the caller must then not begin the step's side effects."""
        self.directory.mkdir(parents=True, exist_ok=True)
        data = (json.dumps(state.to_json(), indent=1, sort_keys=True) + "\n").encode()
        write_durably(self.path, data)
