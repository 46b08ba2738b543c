"""Where a report waits: the disk queue, or memory while the disk refuses writes.

The disk can fail exactly when there is most to report (out of space, a read-only file
system after an I/O error). Then reports are held in a small bounded list in memory,
still sent oldest first after whatever the disk holds, and written to the disk queue
as soon as it takes writes again. Those are lost if the keeper dies meanwhile; without
a disk nothing better is possible.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nodekeeper.keeper.reports.policy import Slot, choose_drops
from nodekeeper.keeper.reports.queue import Entry, QueueLimits, ReportQueue
from nodekeeper.keeper.reports.record import RecordError, is_failure

log = logging.getLogger("nodekeeper.keeper.reports")

HELD_MAX = 100  # reports kept in memory while the disk refuses them
DISK_ERROR_LOG_SECONDS = 600.0  # repeat "cannot write the queue" at most this often


@dataclass
class Item:
    """One report on its way out. ``entry`` is None for a report held in memory."""

    record: dict[str, Any]
    entry: Entry | None
    seq: int = 0  # order among held reports
    claimed: int = 0  # drops of held reports this one carries (memory only)

    @property
    def dropped(self) -> int:
        """How many dropped reports this one tells the server about."""
        return (self.entry.claimed if self.entry else 0) + self.claimed


@dataclass
class _Held:
    items: list[Item] = field(default_factory=list)
    dropped: int = 0
    next_seq: int = 0


class Outbox:
    def __init__(
        self,
        directory: Path,
        limits: QueueLimits | None = None,
        *,
        held_max: int = HELD_MAX,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = Path(directory)
        self.limits = limits or QueueLimits()
        self.held_max = held_max
        self._clock = clock
        self._held = _Held()
        self._disk_error_logged: float | None = None
        self.queue: ReportQueue | None = None
        self._open_queue()

    # -- state -----------------------------------------------------------------------------

    def __len__(self) -> int:
        return (len(self.queue) if self.queue else 0) + len(self._held.items)

    @property
    def held(self) -> int:
        return len(self._held.items)

    @property
    def dropped(self) -> int:
        return (self.queue.dropped if self.queue else 0) + self._held.dropped

    # -- adding ----------------------------------------------------------------------------

    def put(self, record: dict[str, Any]) -> str:
        """Keep ``record`` until it is sent: "queued" (on disk, durably), "held" (in
        memory: the disk refused it), or "dropped" (full of more important reports).
        Never raises for I/O."""
        self.flush_held()
        if not self._held.items and self._open_queue():
            assert self.queue is not None
            try:
                return "queued" if self.queue.put(record) is not None else "dropped"
            except OSError as exc:
                # The record may be on disk already (the drop counter's write failed
                # after it); holding it too is harmless: the server takes a report_id
                # once and answers the second copy 200 "duplicate".
                self._disk_failed(exc)
        return self._hold(record)

    def flush_held(self) -> None:
        """Move reports held in memory into the disk queue, oldest first, if it takes
        writes again."""
        while self._held.items and self._open_queue():
            assert self.queue is not None
            item = self._held.items[0]
            record = item.record
            if item.claimed:
                record = {**record, "claimed_drops": record.get("claimed_drops", 0) + item.claimed}
            try:
                self.queue.put(record)
            except OSError as exc:
                self._disk_failed(exc)
                return
            self._held.items.pop(0)
        if not self._held.items and self._held.dropped and self.queue is not None:
            # Drops counted in memory join the disk's counter, so they are told once.
            try:
                self.queue.add_dropped(self._held.dropped)
                self._held.dropped = 0
            except OSError as exc:
                self._disk_failed(exc)

    # -- sending ---------------------------------------------------------------------------

    def next(self) -> Item | None:
        """The oldest report, pinned so it is not dropped while in flight; its record
        already carries (durably, when on disk) the drops it will tell the server about.
        A record that cannot be read is rejected here and the next one returned."""
        self.flush_held()
        while self.queue is not None and (entry := self.queue.head()) is not None:
            try:
                record = self.queue.read(entry)
            except (OSError, RecordError) as exc:
                self._reject_entry(entry, None, f"unreadable: {exc}")
                continue
            self.queue.pin(entry)
            try:
                record = self.queue.claim_drops(entry, record)
            except OSError as exc:
                # The count stays in the counter for a later report; send this one now.
                self._disk_failed(exc)
            return Item(record, entry)
        if self._held.items:
            item = self._held.items[0]
            item.claimed += self._held.dropped
            self._held.dropped = 0
            return item
        return None

    def delivered(self, item: Item) -> None:
        if item.entry is None:
            self._remove_held(item)
            return
        assert self.queue is not None
        try:
            self.queue.remove(item.entry)
        except OSError as exc:
            # The file stays and is sent again later; the server answers 200 "duplicate".
            self._disk_failed(exc)

    def rejected(self, item: Item, status: int | None, reason: str) -> None:
        if item.entry is None:
            self._remove_held(item)
            self._held.dropped += item.claimed
            return
        self._reject_entry(item.entry, status, reason)

    def release(self, item: Item) -> None:
        """The send failed and will be retried: the report may be dropped again."""
        if item.entry is not None and self.queue is not None:
            self.queue.pin(None)

    # -- internals -------------------------------------------------------------------------

    def _reject_entry(self, entry: Entry, status: int | None, reason: str) -> None:
        assert self.queue is not None
        try:
            self.queue.reject(entry, status, reason)
        except OSError as exc:
            self._disk_failed(exc)

    def _remove_held(self, item: Item) -> None:
        self._held.items = [i for i in self._held.items if i is not item]

    def _hold(self, record: dict[str, Any]) -> str:
        held = self._held
        new = Item(record, None, seq=held.next_seq)
        held.next_seq += 1
        slots = [Slot(i.seq, 1, is_failure(i.record)) for i in held.items]
        drops = choose_drops(slots, Slot(new.seq, 1, is_failure(record)), self.held_max, 1 << 62)
        gone = {d.key for d in drops}
        for item in held.items:
            if item.seq in gone:
                held.dropped += 1 + item.claimed
        held.items = [i for i in held.items if i.seq not in gone]
        if new.seq in gone:
            held.dropped += 1
            return "dropped"
        held.items.append(new)
        return "held"

    def _open_queue(self) -> bool:
        if self.queue is not None:
            return True
        try:
            self.queue = ReportQueue(self.directory, self.limits)
        except OSError as exc:
            self._disk_failed(exc)
            return False
        return True

    def _disk_failed(self, exc: OSError) -> None:
        now = self._clock()
        last = self._disk_error_logged
        if last is None or now - last >= DISK_ERROR_LOG_SECONDS:
            self._disk_error_logged = now
            log.error(
                "cannot write the report queue in %s (%s); reports are held in memory "
                "(up to %d) until the disk takes writes again",
                self.directory,
                exc,
                self.held_max,
            )
