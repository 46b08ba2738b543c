"""One log directory: the archives in it, the total cap over them, and the compressor.

Every log writing into a directory shares one ``LogDirectory`` (looked up by real path),
because the cap is per directory: the keeper's log, the node's log and the error index
draw on one budget. All changes to the set of files (rename into an archive, delete,
grow a partial .gz) happen under one lock, after the budget has room for them, so the
bytes outside the active files never exceed the cap at any instant, whatever a reader
of the directory sees and however far compression falls behind.

Compression runs in one background thread per directory; a writer only renames its
file and returns. Files another program holds open (Windows antivirus, an editor) fail
to delete with PermissionError; they are skipped, counted and retried with backoff.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from .policy import (
    Candidate,
    archive_filename,
    parse_archive_filename,
    pick_to_compress,
    plan_eviction,
    retry_delay,
)
from .settings import LogSettings

log = logging.getLogger(__name__)

Clock = Callable[[], float]
State = Literal["pending", "busy", "archive", "partial", "doomed"]

COMPRESS_LEVEL = 6  # gzip's default: most of level 9's ratio at several times its speed
CHUNK = 1 << 20  # big reads keep the compressor in zlib (GIL released), not in Python
MAINTENANCE_INTERVAL = 60.0  # seconds between retention passes when nothing rotates
# Longest a writer waits for the compressor to give up the file the cap must delete.
CANCEL_WAIT = 0.25


@dataclass
class _Entry:
    """A file the directory accounts for. ``size`` of a partial .gz is what it has been
    allowed to grow to, which is never less than what is on disk."""

    name: str
    base: str
    seq: int
    closed_at: float
    size: int
    state: State
    delete_failures: int = 0
    delete_retry_at: float = 0.0  # monotonic
    compress_failures: int = 0
    compress_retry_at: float = 0.0  # monotonic

    def candidate(self) -> Candidate:
        return Candidate(self.name, self.closed_at, self.seq, self.size, self.state == "busy")


class _Stop(Exception):
    """The compression in progress must end now (cap needs the room, or shutdown)."""


class LogDirectory:
    _registry: ClassVar[dict[str, LogDirectory]] = {}
    _registry_lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def acquire(cls, path: Path, settings: LogSettings, clock: Clock) -> LogDirectory:
        path.mkdir(parents=True, exist_ok=True)
        key = os.path.realpath(path)
        with cls._registry_lock:
            found = cls._registry.get(key)
            if found is None:
                found = cls._registry[key] = LogDirectory(Path(key), settings, clock)
            else:
                found._tighten(settings)
            found._users += 1
            return found

    def release(self, timeout: float | None = 10.0) -> None:
        """Drop one user; the last one stops the compressor after it has compressed what
        is waiting (for at most ``timeout`` seconds; the rest waits for the next start)."""
        with self._registry_lock:
            self._users -= 1
            if self._users > 0:
                return
            del self._registry[str(self.path)]
        with self._lock:
            self._stopping = True
            self._stop_at = time.monotonic() + timeout if timeout is not None else None
        self._wake.set()
        self._worker.join()

    def __init__(self, path: Path, settings: LogSettings, clock: Clock) -> None:
        self.path = path
        self._cap = settings.total_cap
        self._max_age = float(settings.retention)
        self._clock = clock
        self._users = 0
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # a compression ended
        self._entries: dict[str, _Entry] = {}
        # Kept up to date so that the common case (room to spare, nothing expired) costs
        # O(1) under the lock instead of a pass over possibly thousands of archives.
        self._used = 0
        self._expires_at = -math.inf  # the oldest archive's retention ends then
        self._last_seq: dict[str, int] = {}
        self._cancel: str | None = None
        self._stopping = False
        self._stop_at: float | None = None
        self._wake = threading.Event()
        # Problems are reported through ``logging`` by the compressor thread only: a
        # writer that logged while rotating could re-enter itself through the keeper's
        # own handler and deadlock on its lock.
        self._notes: deque[str] = deque(maxlen=100)
        self._scan()
        self._worker = threading.Thread(
            target=self._run, name=f"nodekeeper-logs:{path.name}", daemon=True
        )
        self._worker.start()

    def _tighten(self, settings: LogSettings) -> None:
        with self._lock:
            self._cap = min(self._cap, settings.total_cap)
            self._max_age = min(self._max_age, float(settings.retention))
            self._expires_at = -math.inf

    def _add(self, entry: _Entry) -> None:
        old = self._entries.get(entry.name)
        if old is not None:
            self._used -= old.size
        self._entries[entry.name] = entry
        self._used += entry.size
        self._expires_at = min(self._expires_at, entry.closed_at + self._max_age)

    # -- what the writers call --------------------------------------------------------

    def rotate(
        self, base: str, suffix: str, size: int, now: float, rename: Callable[[Path], None]
    ) -> bool:
        """Make room for ``size`` more archived bytes, then let ``rename`` move the active
        file to the archive name it is given. False (nothing renamed) when the cap has no
        room yet because the files that would have to go cannot be deleted right now;
        ``rename``'s OSError propagates. Either way the writer keeps its lines."""
        with self._lock:
            deadline = time.monotonic() + CANCEL_WAIT
            while not self._make_room(size, now):
                # The only bytes that may go sit behind the file being compressed, which
                # has been told to stop. Wait for it (a fraction of a second, only when
                # the directory is full and compression is behind): a writer paused
                # briefly beats a writer whose file outgrows the cap. Waiting releases
                # the directory lock, and the compressor never takes a writer's lock.
                remaining = deadline - time.monotonic()
                if self._cancel is None or remaining <= 0:
                    return False
                self._changed.wait(remaining)
            seq = self._last_seq.get(base, -1) + 1
            name = archive_filename(base, suffix, now, seq)
            rename(self.path / name)
            self._last_seq[base] = seq
            self._add(_Entry(name, base, seq, now, size, "pending"))
        self._wake.set()
        return True

    def enforce(self, now: float | None = None) -> None:
        """Apply retention and the cap now (rotation does this on its own)."""
        with self._lock:
            self._make_room(0, self._clock() if now is None else now)

    @property
    def cap(self) -> int:
        return self._cap

    def usage(self) -> int:
        """Bytes accounted outside the active files (what the cap limits)."""
        with self._lock:
            return self._used

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """True once nothing waits for compression (tests and benchmarks use this)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not any(e.state in ("pending", "busy") for e in self._entries.values()):
                    return True
            time.sleep(0.01)
        return False

    # -- the budget (call with the lock held) -----------------------------------------

    def _make_room(self, incoming: int, now: float) -> bool:
        """Delete oldest archives until ``incoming`` more bytes fit under the cap. A file
        that will not delete is skipped and retried later (after a backoff)."""
        if self._used + incoming <= self._cap and now <= self._expires_at:
            return True
        while True:
            mono = time.monotonic()
            used = self._used
            candidates = [
                e.candidate()
                for e in self._entries.values()
                if e.state in ("pending", "archive", "busy") and e.delete_retry_at <= mono
            ]
            plan = plan_eviction(
                candidates,
                used=used,
                incoming=incoming,
                cap=self._cap,
                now=now,
                max_age=self._max_age,
            )
            if plan.cancel is not None:
                self._cancel = plan.cancel
            all_deleted = True
            for name in plan.delete:
                all_deleted &= self._delete(self._entries[name])
            if all_deleted:
                evictable = [
                    e.closed_at
                    for e in self._entries.values()
                    if e.state in ("pending", "archive", "busy")
                ]
                self._expires_at = min(evictable, default=math.inf) + self._max_age
                return plan.fits

    def _delete(self, entry: _Entry) -> bool:
        try:
            os.unlink(self.path / entry.name)
        except FileNotFoundError:
            pass  # someone removed it by hand: the bytes are gone all the same
        except OSError as exc:
            entry.delete_failures += 1
            entry.delete_retry_at = time.monotonic() + retry_delay(entry.delete_failures)
            if entry.delete_failures == 1:
                self._note(f"cannot delete {entry.name} yet, will retry: {exc}")
            return False
        self._used -= self._entries.pop(entry.name).size
        return True

    def _grow(self, entry: _Entry, extra: int) -> None:
        """Account for ``extra`` bytes the compressor is about to write to ``entry``."""
        with self._lock:
            if self._stop_requested():
                raise _Stop
            if not self._make_room(extra, self._clock()) or self._cancel is not None:
                raise _Stop
            entry.size += extra
            self._used += extra

    def _note(self, message: str) -> None:
        self._notes.append(message)
        self._wake.set()

    def _stop_requested(self) -> bool:
        if self._cancel is not None:
            return True
        return self._stop_at is not None and time.monotonic() >= self._stop_at

    # -- start-up ----------------------------------------------------------------------

    def _scan(self) -> None:
        """Take stock of what an earlier run left: archives, files still to compress, a
        .gz.tmp from a compression that was cut off (always incomplete: the complete one
        is renamed before its source goes), a source whose .gz is already complete."""
        names = set(os.listdir(self.path))
        for name in sorted(names):
            parsed = parse_archive_filename(name)
            if parsed is None:
                continue
            try:
                size = os.stat(self.path / name).st_size
            except OSError:
                continue
            state: State
            if parsed.kind == "gzip":
                state = "archive"
            elif parsed.kind == "partial" or f"{name}.gz" in names:
                state = "doomed"
            else:
                state = "pending"
            self._add(_Entry(name, parsed.base, parsed.seq, parsed.closed_at, size, state))
            self._last_seq[parsed.base] = max(self._last_seq.get(parsed.base, -1), parsed.seq)
        for entry in list(self._entries.values()):
            if entry.state == "doomed":
                self._delete(entry)

    # -- the compressor thread ---------------------------------------------------------

    def _run(self) -> None:
        next_maintenance = time.monotonic() + MAINTENANCE_INTERVAL
        while True:
            while self._notes:
                log.warning("%s", self._notes.popleft())
            with self._lock:
                job = self._next_job()
                if job is None and self._stopping:
                    return
            if job is not None:
                self._compress(job)
                continue
            if time.monotonic() >= next_maintenance:
                next_maintenance = time.monotonic() + MAINTENANCE_INTERVAL
                self.enforce()
            self._retry_doomed()
            self._wake.wait(self._idle_wait(next_maintenance))
            self._wake.clear()

    def _next_job(self) -> _Entry | None:
        if self._stop_requested() and self._cancel is None:
            return None  # shutdown deadline passed: leave the rest for the next start
        self._cancel = None
        mono = time.monotonic()
        waiting = {
            e.name: e
            for e in self._entries.values()
            if e.state == "pending" and e.compress_retry_at <= mono
        }
        chosen = pick_to_compress([e.candidate() for e in waiting.values()])
        if chosen is None:
            return None
        job = waiting[chosen.name]
        job.state = "busy"
        return job

    def _idle_wait(self, next_maintenance: float) -> float:
        with self._lock:
            times = [next_maintenance]
            for e in self._entries.values():
                if e.state == "doomed":
                    times.append(e.delete_retry_at)
                elif e.state == "pending":
                    times.append(e.compress_retry_at)
        return max(0.01, min(times) - time.monotonic())

    def _retry_doomed(self) -> None:
        mono = time.monotonic()
        with self._lock:
            for entry in list(self._entries.values()):
                if entry.state == "doomed" and entry.delete_retry_at <= mono:
                    self._delete(entry)

    def _compress(self, job: _Entry) -> None:
        source = self.path / job.name
        partial = _Entry(f"{job.name}.gz.tmp", job.base, job.seq, job.closed_at, 0, "partial")
        with self._lock:
            self._add(partial)
        try:
            self._write_gzip(source, partial)
            with self._lock:
                final = f"{job.name}.gz"
                # Renamed only once complete and on disk: a .gz always holds the whole file.
                os.rename(self.path / partial.name, self.path / final)
                self._used -= self._entries.pop(partial.name).size
                self._add(_Entry(final, job.base, job.seq, job.closed_at, partial.size, "archive"))
                job.state = "doomed"  # the .gz has it all now; delete, retrying if held
                self._delete(job)
                self._changed.notify_all()
        except _Stop:
            self._abandon(job, partial, failed=False)
        except (OSError, zlib.error) as exc:
            if self._abandon(job, partial, failed=True) == 1:
                self._note(f"compressing {job.name} failed, will retry: {exc}")

    def _write_gzip(self, source: Path, partial: _Entry) -> None:
        compressor = zlib.compressobj(COMPRESS_LEVEL, zlib.DEFLATED, 31)  # 31: gzip framing
        with open(source, "rb") as src, open(self.path / partial.name, "wb") as out:
            while chunk := src.read(CHUNK):
                if self._stop_requested():
                    raise _Stop
                data = compressor.compress(chunk)
                if data:
                    self._grow(partial, len(data))
                    out.write(data)
            data = compressor.flush()
            self._grow(partial, len(data))
            out.write(data)
            out.flush()
            os.fsync(out.fileno())

    def _abandon(self, job: _Entry, partial: _Entry, *, failed: bool) -> int:
        """Put ``job`` back in the queue and remove its partial .gz."""
        with self._lock:
            if partial.name in self._entries:
                partial.state = "doomed"
                self._delete(partial)
            if job.name in self._entries and job.state == "busy":
                job.state = "pending"
                if failed:
                    job.compress_failures += 1
                    job.compress_retry_at = time.monotonic() + retry_delay(
                        job.compress_failures, first=1.0, longest=300.0
                    )
                else:
                    # Cancelled because the cap needs its bytes: the waiting writer
                    # deletes it now, so do not pick it straight up again.
                    job.compress_retry_at = time.monotonic() + 1.0
            self._changed.notify_all()
            return job.compress_failures
