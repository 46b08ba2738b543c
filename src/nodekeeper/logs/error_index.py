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
_MAX_PASSES = 50


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
    archives. Safe to call while the keeper writes, rotates and compresses the index."""
    directory = Path(directory)
    entries: list[dict[str, Any]] = []
    tail: list[dict[str, Any]] = []
    last_seq = -1
    for _ in range(_MAX_PASSES):
        found = _archives(directory)
        for seq in sorted(s for s in found if s > last_seq):
            entries.extend(_read_archive(directory, found[seq], since))
            last_seq = seq
        tail = list(_read_active(directory, since))
        # If the active file rotated while (or before) we read it, what we read may be
        # the newer file or part of the archive it became: drop it, read the new
        # archives, then the active file again. Archives never change, so only the new
        # ones are read on the next pass.
        if max(_archives(directory), default=-1) <= last_seq:
            break
    return entries + tail


def _archives(directory: Path) -> dict[int, list[str]]:
    """Archive names of the index by sequence number, the .gz first (a plain file may
    be compressed, and removed, between listing it and opening it)."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return {}
    found: dict[int, list[str]] = {}
    for name in names:
        parsed = parse_archive_filename(name)
        if parsed is None or parsed.base != INDEX_NAME or parsed.suffix != INDEX_SUFFIX:
            continue
        if parsed.kind == "gzip":
            found.setdefault(parsed.seq, []).insert(0, name)
        elif parsed.kind == "plain":
            found.setdefault(parsed.seq, []).append(name)
    return found


def _read_archive(directory: Path, forms: list[str], since: float) -> list[dict[str, Any]]:
    parsed = parse_archive_filename(forms[0])
    # The name holds the second the archive was closed, rounded down: every entry in it
    # is older than the end of that second.
    if parsed is not None and parsed.closed_at + 1 <= since:
        return []
    names = [*forms, forms[0] + ".gz"] if forms[0].endswith(INDEX_SUFFIX) else forms
    for name in names:
        try:
            lines = _lines(directory / name, gz=name.endswith(".gz"))
            return [e for e in _entries(lines) if e["timestamp"] > since]
        except FileNotFoundError:
            continue  # compressed meanwhile (try the .gz) or deleted by the cap
    return []


def _read_active(directory: Path, since: float) -> Iterator[dict[str, Any]]:
    try:
        lines = list(_lines(directory / (INDEX_NAME + INDEX_SUFFIX), gz=False))
    except FileNotFoundError:
        return
    for entry in _entries(lines):
        if entry["timestamp"] > since:
            yield entry


def _lines(path: Path, gz: bool) -> list[bytes]:
    """All lines of ``path``; FileNotFoundError if it is gone. A damaged .gz yields the
    lines before the damage."""
    if not gz:
        with open(path, "rb") as fh:
            return fh.readlines()
    lines: list[bytes] = []
    with gzip.open(path, "rb") as fh:
        try:
            for line in fh:
                lines.append(line)
        except (EOFError, OSError, zlib.error):
            pass
    return lines


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
