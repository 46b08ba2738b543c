"""Whole lines out of a byte stream, and the shim's bounded backlog of them. Pure: no I/O.

The shim relays lines, never fragments: a keeper that detaches for a hand-over then holds
only whole lines, so no line is split between the old keeper's log and the new one's.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


class LineSplitter:
    """Feeds bytes in, takes whole lines out (each with its ``\\n``). A line longer than
    ``max_line`` is cut into pieces of that size, as the keeper's reader does with a
    direct child (platform.posix.STREAM_LIMIT), so one runaway line cannot hold memory."""

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self._partial = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._partial += data
        lines: list[bytes] = []
        start, size = 0, len(self._partial)
        while start < size:
            newline = self._partial.find(b"\n", start, start + self.max_line)
            if newline >= 0:
                lines.append(bytes(self._partial[start : newline + 1]))
                start = newline + 1
            elif size - start >= self.max_line:
                lines.append(bytes(self._partial[start : start + self.max_line]))
                start += self.max_line
            else:
                break
        del self._partial[:start]
        return lines

    def end(self) -> list[bytes]:
        """The stream ended: what is left is a last line without a newline."""
        rest, self._partial = bytes(self._partial), bytearray()
        return [rest] if rest else []


@dataclass(frozen=True)
class Entry:
    seq: int
    stream: str  # "stdout" or "stderr"
    line: bytes


class Backlog:
    """Lines not yet sent to a keeper, oldest first, at most ``max_bytes`` of them.

    When full, the oldest lines are dropped and counted: the node must never block on its
    own logging because no keeper is attached (a pipe nobody reads stops a node that
    logs). ``take_dropped`` hands the count to the sender once, to be said in the log."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: deque[Entry] = deque()
        self._bytes = 0
        self._next_seq = 0
        self._dropped = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._bytes

    @property
    def dropped(self) -> int:
        """Lines dropped since the last ``take_dropped``."""
        return self._dropped

    def next_seq_to_send(self) -> int:
        """The sequence number of the oldest line not sent yet (or of the next line)."""
        return self._entries[0].seq if self._entries else self._next_seq

    def add(self, stream: str, line: bytes) -> None:
        self._entries.append(Entry(self._next_seq, stream, line))
        self._next_seq += 1
        self._bytes += len(line)
        while self._bytes > self.max_bytes and len(self._entries) > 1:
            self._bytes -= len(self._entries.popleft().line)
            self._dropped += 1

    def peek(self, limit: int) -> list[Entry]:
        """Up to ``limit`` oldest entries, left in place until ``remove_through``."""
        return [self._entries[i] for i in range(min(limit, len(self._entries)))]

    def remove_through(self, seq: int) -> None:
        """Forget every entry up to ``seq``, once they were sent. By number, not count:
        ``add`` may have dropped some of them meanwhile."""
        while self._entries and self._entries[0].seq <= seq:
            self._bytes -= len(self._entries.popleft().line)

    def take_dropped(self) -> int:
        dropped, self._dropped = self._dropped, 0
        return dropped
