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
_HOLE_PASSES = 5


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
    archives. Safe to call while the keeper writes, rotates and compresses the index.

    A directory cannot be listed atomically: a file renamed while it is listed (a .gz
    appearing as its source goes) may be missing from that listing. So the reader does
    not trust one listing. It notes which file is active, lists, reads every archive it
    has not read yet, then reads the active file. It is done when the active file is
    still the one it noted, no newer archive has appeared, and the archive numbers it
    read have no hole; otherwise it reads only what is new (archives never change) and
    checks again. A hole that stays is a file the cap deleted. If the index rotates
    faster than it can be read, the newest entries are left for the next call (whose
    ``since`` will ask for them): the result never has a gap.
    """
    directory = Path(directory)
    read: dict[int, list[dict[str, Any]]] = {}
    hole_passes = 0
    noted = _identity(directory / (INDEX_NAME + INDEX_SUFFIX))
    found = _archives(directory)
    for _ in range(_MAX_PASSES):
        for seq in sorted(found):
            if seq not in read:
                read[seq] = _read_archive(directory, found[seq], since)
        tail, got = _read_active(directory, since)
        # Noted before the next listing, so that listing can serve the next pass.
        now_active = _identity(directory / (INDEX_NAME + INDEX_SUFFIX))
        found = _archives(directory)
        if got is None or noted is None:
            # No active file, or caught between a rotation's rename and its reopen.
            same = got is None and noted is None
        else:
            # The same file (device, inode) that only grew: not a new file that reuses
            # the inode number of a deleted one.
            same = got[:2] == noted[:2] and got[2] >= noted[2]
        noted = now_active
        if not same or max(found, default=-1) > max(read, default=-1):
            continue
        if read and len(read) != max(read) - min(read) + 1 and hole_passes < _HOLE_PASSES:
            hole_passes += 1
            continue
        return [entry for seq in sorted(read) for entry in read[seq]] + tail
    # Did not settle: the archives without a hole, oldest first, and nothing newer.
    entries: list[dict[str, Any]] = []
    for seq in range(min(read, default=0), max(read, default=-1) + 1):
        if seq not in read:
            break
        entries.extend(read[seq])
    return entries


def _identity(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino, st.st_size)


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


def _read_active(
    directory: Path, since: float
) -> tuple[list[dict[str, Any]], tuple[int, int, int] | None]:
    """Entries of the active file and the identity of the file actually read."""
    try:
        with open(directory / (INDEX_NAME + INDEX_SUFFIX), "rb") as fh:
            lines = fh.readlines()
            st = os.fstat(fh.fileno())
    except FileNotFoundError:
        return [], None
    entries = [e for e in _entries(lines) if e["timestamp"] > since]
    return entries, (st.st_dev, st.st_ino, st.st_size)


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
