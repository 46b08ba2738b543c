"""Carry the node's stdout/stderr into the keeper's log files, line by line.

The keeper is the only writer of log files (docs/decisions/025-log-writer-and-rotation.md):
rotation, compression and the
error index belong to ``nodekeeper.logs``; this module only reads the pipes.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("nodekeeper.keeper")


class LineSink(Protocol):
    def write(self, line: str, stream: str) -> None: ...

    def close(self) -> None: ...


class RotatingSink:
    """Node output into ``nodekeeper.logs.RotatingLog``; the level of each line is read
    from the line itself (``level_of_line``), so node errors reach the error index."""

    def __init__(self, directory: Path, settings: Any, error_index: Any) -> None:
        from nodekeeper.logs import RotatingLog, level_of_line

        self._log = RotatingLog(directory, "storagenode", settings, error_index=error_index)
        self._level_of = level_of_line

    def write(self, line: str, stream: str) -> None:
        # The level comes from the line (and the stream it came on); lines at ERROR and
        # above reach the error index through the RotatingLog.
        self._log.write(line, level=self._level_of(line, stream), source="storagenode")

    def close(self) -> None:
        close = getattr(self._log, "close", None)
        if close is not None:
            close()


class LoggingSink:
    """Node output through the keeper's own logger: used when no log directory is set up
    (tests, `nodekeeper run` without nodekeeper.logs)."""

    def write(self, line: str, stream: str) -> None:
        log.log(
            logging.WARNING if stream == "stderr" else logging.INFO, "node %s: %s", stream, line
        )

    def close(self) -> None:
        pass


async def pump(reader: asyncio.StreamReader, stream: str, sink: LineSink) -> None:
    """Copy lines until EOF (every holder of the pipe's write end has exited)."""
    while True:
        try:
            chunk = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            chunk = exc.partial  # the last line without a newline, or b"" at EOF
            if not chunk:
                return
        except asyncio.LimitOverrunError as exc:
            # A line longer than the reader's limit: pass it on in pieces rather than drop it.
            chunk = await reader.readexactly(exc.consumed)
        text = chunk.decode("utf-8", errors="replace").rstrip("\r\n")
        try:
            sink.write(text, stream)
        except Exception:  # a full disk must not stop the pipe being drained
            log.exception("cannot write node output")
