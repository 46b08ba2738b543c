"""The error index: a small JSON-lines file of what went wrong, for the tray app.

One object per line: ``timestamp`` (UNIX seconds, what readers compare), ``time`` (ISO
8601 for people), ``source``, ``level``, ``message`` and any extra fields. It lives in
the log directory as ``errors.jsonl`` and rotates, compresses and counts against the
cap like every other log there.

``read_errors_since`` is the reader. It runs in another process (the tray app) while
the keeper may be rotating the index, so it lists the files, reads them, and lists them
again; if anything was renamed in between it reads once more. A half-written last line
(the keeper is mid-write) or a damaged archive costs only the lines that cannot be read.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import time
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .directory import Clock
from .levels import LEVEL_NAMES
from .lineformat import LocalTimestamps, level_name
from .policy import parse_archive_filename
from .rotating import RotatingFile
from .settings import LogSettings

INDEX_NAME = "errors"
INDEX_SUFFIX = ".jsonl"
RESERVED_FIELDS = frozenset({"timestamp", "time", "source", "level", "message"})
_READ_ATTEMPTS = 5


def normalise_level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    found = LEVEL_NAMES.get(level.upper())
    if found is None:
        raise ValueError(f"unknown level {level!r}: use one of {', '.join(LEVEL_NAMES)}")
    return found


class ErrorIndex:
    def __init__(self, directory: Path, settings: LogSettings, clock: Clock = time.time) -> None:
        self.directory = Path(directory)
        self._clock = clock
        self._stamp = LocalTimestamps()
        self._encode = json.JSONEncoder(ensure_ascii=False, default=str).encode
        self._file = RotatingFile(self.directory, INDEX_NAME, INDEX_SUFFIX, settings, clock)

    @property
    def path(self) -> Path:
        return self._file.path

    def record(
        self,
        source: str,
        level: str | int,
        message: str,
        *,
        timestamp: float | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Append one entry and return it. Extra fields must be JSON-friendly (anything
        else is written as its ``str``) and may not reuse the five reserved keys."""
        clash = RESERVED_FIELDS & fields.keys()
        if clash:
            raise TypeError(f"fields {sorted(clash)} are reserved in the error index")
        now = self._clock() if timestamp is None else timestamp
        entry: dict[str, Any] = {
            "timestamp": now,
            "time": self._stamp(now),
            "source": source,
            "level": level_name(normalise_level(level)),
            "message": message,
            **fields,
        }
        self._file.write((self._encode(entry) + "\n").encode("utf-8", "backslashreplace"), now)
        return entry

    def flush(self) -> None:
        self._file.flush()

    def close(self, timeout: float | None = 10.0) -> None:
        self._file.close(timeout)


def read_errors_since(directory: Path, since: float) -> list[dict[str, Any]]:
    """Entries with ``timestamp > since``, oldest first, from the active index and its
    archives. Safe to call while the keeper writes and rotates the index."""
    directory = Path(directory)
    entries: list[dict[str, Any]] = []
    for _ in range(_READ_ATTEMPTS):
        before = _index_files(directory)
        try:
            entries = list(_read_all(directory, before, since))
        except FileNotFoundError:
            continue  # renamed or compressed under us: list again
        if _index_files(directory) == before:
            return entries
    return entries  # the index kept changing: return the last full pass


def _index_files(directory: Path) -> list[str]:
    """The index files to read, oldest first: one per archive (its .gz when both exist)
    then the active file. Archives whose newest entry predates ``since`` are kept in the
    list (for the change check) and skipped when read."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    archives: dict[int, tuple[str, bool]] = {}
    for name in names:
        parsed = parse_archive_filename(name)
        if parsed is None or parsed.base != INDEX_NAME or parsed.suffix != INDEX_SUFFIX:
            continue
        if parsed.kind == "partial":
            continue
        known = archives.get(parsed.seq)
        if known is None or (parsed.kind == "gzip" and not known[1]):
            archives[parsed.seq] = (name, parsed.kind == "gzip")
    ordered = [archives[seq][0] for seq in sorted(archives)]
    if INDEX_NAME + INDEX_SUFFIX in names:
        ordered.append(INDEX_NAME + INDEX_SUFFIX)
    return ordered


def _read_all(directory: Path, names: list[str], since: float) -> Iterator[dict[str, Any]]:
    for name in names:
        parsed = parse_archive_filename(name)
        # The name holds the second the archive was closed, rounded down: every entry in
        # it is older than that second's end.
        if parsed is not None and parsed.closed_at + 1 <= since:
            continue
        for entry in _entries(_lines(directory / name, gz=name.endswith(".gz"))):
            if entry["timestamp"] > since:
                yield entry


def _lines(path: Path, gz: bool) -> Iterator[bytes]:
    if not gz:
        with open(path, "rb") as fh:
            yield from fh
        return
    with gzip.open(path, "rb") as fh:
        try:
            yield from fh
        except (EOFError, OSError, zlib.error):
            return  # damaged archive: keep what could be read before the damage


def _entries(lines: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    for raw in lines:
        if not raw.endswith(b"\n"):
            return  # being written right now: it will be complete on the next read
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(entry, dict):
            continue
        ts = entry.get("timestamp")
        if isinstance(ts, int | float) and not isinstance(ts, bool) and math.isfinite(ts):
            yield entry
