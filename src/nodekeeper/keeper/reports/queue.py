"""The bounded on-disk queue where reports wait until the control plane takes them.

Layout under the queue's directory::

    queue/00000000000000000042.json   one record per file; the number is the queue order
    queue/.<name>.<rand>.tmp          a write in progress (deleted at start: a writer died)
    rejected/00000000000000000041.json  reports the server refused for good, with why
    dropped.json                      {"dropped": N}: reports dropped while the queue was
                                      full, not yet told to the server

One file per report (rather than one append-only file) keeps every operation a create,
a rename or an unlink, each atomic on its own: a keeper killed at any instant leaves
whole records and at most one temp file, and sending, dropping and rejecting never
rewrite the others. A thousand small files is nothing for any file system we run on.

All methods may be called from any thread (one lock); they raise OSError when the disk
does, and the reporter decides what that means.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nodekeeper.durable import remove_temp_files, write_durably
from nodekeeper.keeper.reports.policy import Slot, choose_drops
from nodekeeper.keeper.reports.record import (
    RecordError,
    decode_record,
    encode_record,
    is_failure,
    supersede_key,
)

log = logging.getLogger("nodekeeper.keeper.reports")

QUEUE_DIR = "queue"
REJECTED_DIR = "rejected"
COUNTER_FILE = "dropped.json"
_NAME = re.compile(r"^(\d{20})\.json$")

MiB = 1 << 20


@dataclass(frozen=True)
class QueueLimits:
    # 1000 reports is ten days of heartbeats at the default 15-min check with room for
    # failures; 5 MiB bounds the disk use even if every report were large (most are
    # ~600 bytes, the server takes up to 64 KiB).
    max_count: int = 1000
    max_bytes: int = 5 * MiB
    rejected_keep: int = 100  # rejected reports kept for the operator to look at

    def __post_init__(self) -> None:
        if self.max_count < 1:
            raise ValueError("the report queue must hold at least one report")
        if self.max_bytes < 64 * 1024:
            raise ValueError("the report queue needs at least 64 KiB: one report may be that big")
        if self.rejected_keep < 0:
            raise ValueError("rejected_keep cannot be negative")


@dataclass
class Entry:
    seq: int
    path: Path
    size: int
    failure: bool
    claimed: int = 0  # earlier drops this report will tell the server about
    supersede: str | None = None  # a newer report with the same key replaces this one


class ReportQueue:
    def __init__(self, directory: Path, limits: QueueLimits | None = None) -> None:
        self.directory = Path(directory)
        self.limits = limits or QueueLimits()
        self.queue_dir = self.directory / QUEUE_DIR
        self.rejected_dir = self.directory / REJECTED_DIR
        self._counter_path = self.directory / COUNTER_FILE
        self._lock = threading.RLock()
        self._entries: list[Entry] = []  # oldest first
        self._pinned: int | None = None
        self.queue_dir.mkdir(parents=True, exist_ok=True)
        self.rejected_dir.mkdir(parents=True, exist_ok=True)
        removed = sum(
            remove_temp_files(d) for d in (self.queue_dir, self.rejected_dir, self.directory)
        )
        if removed:
            log.info("report queue: removed %d half-written file(s) left by a crash", removed)
        self._dropped = self._read_counter()
        self._load()
        self._next_seq = 1 + max(
            [e.seq for e in self._entries] + self._seqs(self.rejected_dir), default=0
        )
        # A queue written by an older keeper may hold several heartbeats: keep the newest.
        for newest in {e.supersede: e for e in self._entries if e.supersede}.values():
            self._replace_superseded(newest)
        # The caps may have been lowered since the queue was written.
        self._apply(choose_drops(self._slots(), None, self.limits.max_count, self.limits.max_bytes))

    # -- reading ---------------------------------------------------------------------------

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    @property
    def total_bytes(self) -> int:
        with self._lock:
            return sum(e.size for e in self._entries)

    @property
    def dropped(self) -> int:
        """Reports dropped and not yet claimed by a report on its way to the server."""
        with self._lock:
            return self._dropped

    def entries(self) -> list[Entry]:
        with self._lock:
            return list(self._entries)

    def head(self) -> Entry | None:
        with self._lock:
            return self._entries[0] if self._entries else None

    def read(self, entry: Entry) -> dict[str, Any]:
        """The record; RecordError if the file is not one (it is then for ``reject``)."""
        return decode_record(entry.path.read_bytes())

    # -- writing ---------------------------------------------------------------------------

    def put(self, record: dict[str, Any]) -> Entry | None:
        """Store one record durably; returns its entry, or None when the queue is full of
        reports that matter more and this one was dropped (and counted) instead."""
        data = encode_record(record)
        with self._lock:
            seq = self._next_seq
            self._next_seq += 1
            entry = Entry(
                seq, self._path(seq), len(data), is_failure(record), supersede=supersede_key(record)
            )
            incoming = Slot(seq, entry.size, entry.failure)
            drops = choose_drops(
                self._slots(), incoming, self.limits.max_count, self.limits.max_bytes
            )
            if any(d.key == seq for d in drops):
                self._apply([d for d in drops if d.key != seq], also_counted=1)
                return None
            write_durably(entry.path, data)
            self._entries.append(entry)
            self._apply(drops)
            self._replace_superseded(entry)
            return entry

    def add_dropped(self, count: int) -> None:
        """Count reports dropped elsewhere (held in memory while the disk failed)."""
        with self._lock:
            self._set_counter(self._dropped + count)

    def pin(self, entry: Entry | None) -> None:
        """Mark the report being sent (or none): it cannot be dropped while in flight,
        since the server may have stored it already."""
        with self._lock:
            self._pinned = entry.seq if entry is not None else None

    def claim_drops(self, entry: Entry, record: dict[str, Any]) -> dict[str, Any]:
        """Move the drop counter into ``entry`` (durably, in its file) and return the
        record as it now is. Done before the first send of each attempt, so a re-send of
        the same report after a lost answer carries the same count the server may have
        stored, and the count is never told twice."""
        with self._lock:
            if not self._dropped:
                return record
            claimed = entry.claimed + self._dropped
            updated = {**record, "claimed_drops": claimed}
            data = encode_record(updated)
            write_durably(entry.path, data)
            entry.claimed, entry.size = claimed, len(data)
            # A crash between these two writes counts those drops twice: an over-count
            # by a handful beats losing them.
            self._set_counter(0)
            return updated

    def remove(self, entry: Entry) -> None:
        """The server has the report."""
        with self._lock:
            self._forget(entry)
            with contextlib.suppress(FileNotFoundError):
                entry.path.unlink()

    def reject(self, entry: Entry, status: int | None, reason: str) -> None:
        """The report can never be accepted: keep it in ``rejected/`` (the newest
        ``rejected_keep`` of them) for the operator, and take it out of the queue. Drops it
        had claimed go back to the counter for the next report."""
        with self._lock:
            try:
                raw = entry.path.read_bytes().decode("utf-8", "replace")
            except OSError as exc:
                raw = f"<unreadable: {exc}>"
            note = {"rejected_at": time.time(), "status": status, "reason": reason, "record": raw}
            if self.limits.rejected_keep:
                target = self.rejected_dir / entry.path.name
                write_durably(target, json.dumps(note, sort_keys=True).encode())
            self._forget(entry)
            with contextlib.suppress(FileNotFoundError):
                entry.path.unlink()
            if entry.claimed:
                self._set_counter(self._dropped + entry.claimed)
            self._trim_rejected()

    # -- internals -------------------------------------------------------------------------

    def _path(self, seq: int) -> Path:
        return self.queue_dir / f"{seq:020d}.json"

    def _slots(self) -> list[Slot]:
        return [Slot(e.seq, e.size, e.failure, pinned=e.seq == self._pinned) for e in self._entries]

    def _apply(self, drops: list[Slot], also_counted: int = 0) -> None:
        """Drop these entries; count them (and whatever they had claimed) first."""
        if not drops and not also_counted:
            return
        by_seq = {e.seq: e for e in self._entries}
        victims = [by_seq[d.key] for d in drops]
        self._set_counter(self._dropped + also_counted + sum(1 + v.claimed for v in victims))
        for victim in victims:
            self._forget(victim)
            with contextlib.suppress(FileNotFoundError):
                victim.path.unlink()
        total = len(victims) + also_counted
        log.warning(
            "report queue full (%d reports, %d bytes allowed): dropped %d report(s); "
            "the next report sent says so",
            self.limits.max_count,
            self.limits.max_bytes,
            total,
        )

    def _replace_superseded(self, newest: Entry) -> None:
        """Delete older queued reports that ``newest`` makes pointless (not counted as
        dropped: nothing is lost). The one in flight stays; drops an older one had
        claimed are handed back to the counter so the next report still tells them."""
        if newest.supersede is None:
            return
        stale = [
            e
            for e in self._entries
            if e.supersede == newest.supersede and e.seq != newest.seq and e.seq != self._pinned
        ]
        if not stale:
            return
        self._set_counter(self._dropped + sum(e.claimed for e in stale))
        for entry in stale:
            self._forget(entry)
            with contextlib.suppress(FileNotFoundError):
                entry.path.unlink()

    def _forget(self, entry: Entry) -> None:
        self._entries = [e for e in self._entries if e.seq != entry.seq]
        if self._pinned == entry.seq:
            self._pinned = None

    def _set_counter(self, value: int) -> None:
        write_durably(self._counter_path, json.dumps({"dropped": value}).encode())
        self._dropped = value

    def _read_counter(self) -> int:
        try:
            value = json.loads(self._counter_path.read_bytes())["dropped"]
        except FileNotFoundError:
            return 0
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning(
                "report queue: cannot read %s (%s); counting from 0", self._counter_path, exc
            )
            return 0
        return value if isinstance(value, int) and value >= 0 else 0

    def _load(self) -> None:
        for seq in self._seqs(self.queue_dir):
            path = self._path(seq)
            try:
                data = path.read_bytes()
                record = decode_record(data)
                claimed = record.get("claimed_drops", 0)
                entry = Entry(
                    seq,
                    path,
                    len(data),
                    is_failure(record),
                    claimed if isinstance(claimed, int) else 0,
                    supersede_key(record),
                )
            except FileNotFoundError:
                continue
            except (OSError, RecordError) as exc:
                # Should not happen (files appear whole, by rename), but a disk error or a
                # hand edit must not stop every later report: set it aside.
                log.error("report queue: %s is not a readable report (%s); moved aside", path, exc)
                self.reject(Entry(seq, path, 0, False), None, f"unreadable: {exc}")
                continue
            self._entries.append(entry)

    @staticmethod
    def _seqs(directory: Path) -> list[int]:
        found = []
        for path in directory.iterdir():
            match = _NAME.match(path.name)
            if match:
                found.append(int(match.group(1)))
        return sorted(found)

    def _trim_rejected(self) -> None:
        seqs = self._seqs(self.rejected_dir)
        for seq in seqs[: max(0, len(seqs) - self.limits.rejected_keep)]:
            with contextlib.suppress(FileNotFoundError):
                (self.rejected_dir / f"{seq:020d}.json").unlink()
