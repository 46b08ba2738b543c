"""One active file that rotates by size and by day: the writer's side of a log.

Rotation is close, rename to the archive name, reopen: the only way that works on
Windows too, where a file we hold open cannot be renamed. When the rename fails because
another program holds the file (WinError 32, PermissionError), or the cap has no room
because old archives will not delete yet, the writer reopens the same file, keeps
appending past the size limit and tries again a little later: no line is ever dropped
to honour a limit. We chose this over copy-and-truncate, which needs no rename but
copies the whole file on the writer's thread and loses the lines written between the
copy and the truncate.

Each line is flushed as it is written (like the standard library's handlers): a keeper
that dies loses nothing it had accepted, and a reader sees every line at once.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import BinaryIO

from .directory import Clock, LogDirectory
from .policy import NAME_PATTERN, SUFFIX_PATTERN, day_end_for, retry_delay, rotation_reason
from .settings import LogSettings

# Lines that arrive while the active file cannot be opened at all wait in memory, up to
# this many bytes; beyond it the oldest are dropped and counted in ``dropped_lines``.
BACKLOG_LIMIT = 8 << 20


class RotatingFile:
    """Thread-safe writer of whole lines (bytes) to ``directory/name+suffix``."""

    def __init__(
        self,
        directory: Path,
        name: str,
        suffix: str,
        settings: LogSettings,
        clock: Clock = time.time,
    ) -> None:
        if not NAME_PATTERN.match(name):
            raise ValueError(f"log name {name!r} must be 1-64 letters, digits, '_' or '-'")
        if not SUFFIX_PATTERN.match(suffix):
            raise ValueError(f"log suffix {suffix!r} must look like '.log'")
        self.name = name
        self.suffix = suffix
        self.path = Path(directory) / f"{name}{suffix}"
        self._clock = clock
        self._max = settings.max_file_size
        self._daily = settings.rotate_daily
        # After a failed rotation, try again once this much more has been written (or
        # after the backoff delay, whichever comes first). Small, so that the file does
        # not outgrow the room the cap can make while it waits.
        self._step = max(settings.max_file_size // 16, 256)
        self._lock = threading.Lock()
        self._closed = False
        self._fh: BinaryIO | None = None
        self._size = 0
        self._failures = 0
        self._reopen_at = 0.0
        self._backlog: deque[bytes] = deque()
        self._backlog_bytes = 0
        self.dropped_lines = 0
        self.discarded_bytes = 0
        self.rotation_failures = 0
        self.directory = LogDirectory.acquire(Path(directory), settings, clock)
        try:
            self._open()
        except OSError:
            self.directory.release(0)
            raise
        now = clock()
        if self._fh is not None and self._size > 0:
            # A file left by an earlier run belongs to the day it was last written.
            now = min(now, os.fstat(self._fh.fileno()).st_mtime)
        self._day_end = day_end_for(now, self._daily)
        self._limit = self._max
        self._next_check = self._day_end

    # -- writing -----------------------------------------------------------------------

    def write(self, data: bytes, now: float | None = None) -> None:
        """Append one or more complete lines. ``now`` is the clock reading the caller
        stamped them with (read again if not given)."""
        if now is None:
            now = self._clock()
        with self._lock:
            if self._closed:
                raise ValueError(f"{self.path.name} is closed")
            n = len(data)
            if self._size + n > self._limit or now >= self._next_check or self._fh is None:
                self._slow_path(n, now)
            fh = self._fh
            if fh is None:
                self._keep(data)
                return
            try:
                fh.write(data)
                fh.flush()
            except OSError:
                self._lost_file(data)
                return
            self._size += n

    def flush(self) -> None:
        with self._lock:
            if self._fh is not None:
                try:
                    self._fh.flush()
                except OSError:
                    self._lost_file(b"")

    def close(self, timeout: float | None = 10.0) -> None:
        """Close the file, then let the directory finish compressing (``timeout``)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._fh is None and self._backlog:
                self._try_reopen(force=True)
            self._close_fh()
        self.directory.release(timeout)

    @property
    def size(self) -> int:
        return self._size

    # -- rotation ----------------------------------------------------------------------

    def _slow_path(self, incoming: int, now: float) -> None:
        if self._fh is None and not self._try_reopen():
            return
        reason = rotation_reason(self._size, incoming, self._max, now, self._day_end)
        if reason is None:
            if self._size == 0:
                self._day_end = day_end_for(now, self._daily)
            self._limit, self._next_check, self._failures = self._max, self._day_end, 0
            return
        if self._rotate(now):
            self._failures = 0
            self._day_end = day_end_for(now, self._daily)
            self._limit, self._next_check = self._max, self._day_end
        else:
            self._failures += 1
            self.rotation_failures += 1
            if self._size + incoming > self.directory.cap:
                self._discard()
            self._limit = self._size + self._step
            self._next_check = now + retry_delay(self._failures)

    def _rotate(self, now: float) -> bool:
        def rename(target: Path) -> None:
            self._close_fh()
            os.rename(self.path, target)

        try:
            rotated = self.directory.rotate(self.name, self.suffix, self._size, now, rename)
        except OSError:
            rotated = False  # held open elsewhere: keep appending to the same file
        if self._fh is None:
            self._try_reopen(force=True)
        return rotated

    def _discard(self) -> None:
        """The active file outgrew the whole cap while it could not be rotated (renames
        or deletes refused for a long time): no archive could ever hold it, and the cap
        is the promise that the disk never fills. Empty it, and say so in its place."""
        lost = self._size
        self._close_fh()
        try:
            with open(self.path, "wb") as fh:
                fh.write(
                    b"[nodekeeper] %d bytes of this log were discarded: the file outgrew "
                    b"the total cap while it could not be rotated\n" % lost
                )
        except OSError:
            pass  # held so that it cannot even be truncated: keep appending
        else:
            self.discarded_bytes += lost
        self._try_reopen(force=True)

    # -- keeping lines when the file is gone -------------------------------------------

    def _open(self) -> None:
        fh = open(self.path, "ab")  # noqa: SIM115 - lives until close()
        self._fh = fh
        self._size = fh.tell()

    def _close_fh(self) -> None:
        fh, self._fh = self._fh, None
        if fh is not None:
            # Every line was flushed when written: a failing close loses nothing.
            with contextlib.suppress(OSError):
                fh.close()

    def _try_reopen(self, force: bool = False) -> bool:
        mono = time.monotonic()
        if not force and mono < self._reopen_at:
            return False
        try:
            self._open()
        except OSError:
            self._reopen_at = mono + 1.0
            return False
        while self._backlog and self._fh is not None:
            data = self._backlog.popleft()
            self._backlog_bytes -= len(data)
            try:
                self._fh.write(data)
                self._fh.flush()
            except OSError:
                self._close_fh()
                self._reopen_at = time.monotonic() + 1.0
                self._backlog.appendleft(data)  # still the oldest line: keep the order
                self._backlog_bytes += len(data)
                return False
            self._size += len(data)
        return self._fh is not None

    def _lost_file(self, data: bytes) -> None:
        self._close_fh()
        self._reopen_at = time.monotonic() + 1.0
        if data:
            self._keep(data)

    def _keep(self, data: bytes) -> None:
        self._backlog.append(data)
        self._backlog_bytes += len(data)
        while self._backlog_bytes > BACKLOG_LIMIT:
            dropped = self._backlog.popleft()
            self._backlog_bytes -= len(dropped)
            self.dropped_lines += dropped.count(b"\n")
