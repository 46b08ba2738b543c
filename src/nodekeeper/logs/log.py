"""``RotatingLog``: lines with time, level and source, written to a rotating file.

The keeper's supervisor writes each line the node prints through one of these, and
the keeper's own ``logging`` handler writes through another. Lines at ERROR and above
are also recorded in the error index, which is what the tray app shows.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from .directory import Clock
from .error_index import ErrorIndex
from .lineformat import formatter_for
from .rotating import RotatingFile
from .settings import LogSettings


class RotatingLog:
    def __init__(
        self,
        directory: Path,
        name: str,
        settings: LogSettings,
        error_index: ErrorIndex | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.name = name
        self._clock = clock
        self._format = formatter_for(settings.format)
        self._error_index = error_index
        self._file = RotatingFile(Path(directory), name, ".log", settings, clock)

    @property
    def path(self) -> Path:
        """The active file."""
        return self._file.path

    @property
    def file(self) -> RotatingFile:
        return self._file

    def write(
        self,
        message: str,
        level: int = logging.INFO,
        source: str | None = None,
        *,
        timestamp: float | None = None,
    ) -> None:
        """Write one entry; safe from any thread. ``timestamp`` defaults to the clock
        (the logging handler passes the record's creation time)."""
        now = self._clock() if timestamp is None else timestamp
        source = source or self.name
        message = message.rstrip("\r\n")
        line = self._format(now, level, source, message)
        # backslashreplace: a node's stray bytes (decoded with surrogateescape) must not
        # cost the whole line.
        self._file.write(line.encode("utf-8", "backslashreplace"), now)
        if level >= logging.ERROR and self._error_index is not None:
            self._error_index.record(source, level, message, timestamp=now)

    def flush(self) -> None:
        self._file.flush()

    def close(self, timeout: float | None = 10.0) -> None:
        """Close the file; waits up to ``timeout`` s for compression when it is the last
        log of its directory. Closing the error index is its owner's job."""
        self._file.close(timeout)
