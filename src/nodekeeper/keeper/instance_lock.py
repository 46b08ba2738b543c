"""One keeper per data directory: an exclusive OS lock on ``<data_dir>/keeper.lock``.

Taken first thing in ``nodekeeper run``, before logging and update recovery: a second
keeper on the same config must not touch the journal, the logs or the node. The lock is
the OS's, so it goes with the process however it ends (kill -9, a crash, a power cut
leaves nothing to clean up): ``fcntl.flock`` on POSIX, ``msvcrt.locking`` (LockFile) on
Windows. The holder writes its pid at the start of the file, so the refusal can name it;
the pid is only a hint for the operator, the lock itself is the truth.

Windows locks are mandatory byte ranges: a locked byte cannot be read by anyone else. So
the lock is on one byte far past the pid text (locking beyond the end of a file is
allowed), and the pid stays readable. flock locks the whole file, with the same layout.

The file descriptor is not inheritable (Python's default), so the node the keeper starts
never holds the lock after the keeper is gone.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

LOCK_NAME = "keeper.lock"
LOCK_OFFSET = 1 << 20  # the locked byte on Windows; the pid text lives before it
PID_BYTES = 64
# A keeper started while the previous one is still exiting (a service restart, a
# self-update hand-over the launcher starts at once) waits this long for the lock.
DEFAULT_WAIT_SECONDS = 5.0
_RETRY_SECONDS = 0.1


class InstanceLocked(Exception):
    """Another live process holds the data directory's lock."""

    def __init__(self, path: Path, pid: int | None) -> None:
        who = f"pid {pid}" if pid is not None else "pid unknown"
        super().__init__(
            f"another keeper ({who}) is already running with the data directory "
            f"{path.parent} (lock {path}); stop it first, or give this one its own data_dir"
        )
        self.path = path
        self.pid = pid
        self.holder = who  # "pid N" or "pid unknown", for callers' own messages


class LockUnavailable(Exception):
    """The lock file cannot be created or opened (permissions, a read-only disk)."""


@dataclass
class InstanceLock:
    path: Path
    fd: int

    def release(self) -> None:
        """Give the lock up (the OS does the same when the process ends)."""
        if self.fd < 0:
            return
        with contextlib.suppress(OSError):
            _unlock(self.fd)
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self.fd = -1

    def __enter__(self) -> InstanceLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def acquire(
    data_dir: Path,
    *,
    wait: float = DEFAULT_WAIT_SECONDS,
    pid: int | None = None,
    name: str = LOCK_NAME,
) -> InstanceLock:
    """Lock ``data_dir`` for this process and write ``pid`` (default: ours) into the lock
    file ``name``. Raises InstanceLocked (naming the holder) after ``wait`` seconds of
    trying, or LockUnavailable. Nothing is written unless the lock was taken. Quickstart
    takes its own lock (another ``name``) the same way."""
    path = Path(data_dir) / name
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o644)
    except OSError as exc:
        raise LockUnavailable(
            f"cannot create the lock file {path}: {exc.strerror or exc}"
        ) from None
    deadline = time.monotonic() + wait
    try:
        while not _try_lock(fd):
            if time.monotonic() >= deadline:
                raise InstanceLocked(path, read_holder(fd))
            time.sleep(_RETRY_SECONDS)
        _write_pid(fd, os.getpid() if pid is None else pid)
    except BaseException:
        os.close(fd)
        raise
    return InstanceLock(path, fd)


def read_holder(fd: int) -> int | None:
    """The pid the holder wrote, if it is readable and a number."""
    try:
        text = os.pread(fd, PID_BYTES, 0) if hasattr(os, "pread") else _read_start(fd)
        return parse_pid(text)
    except OSError:
        return None


def parse_pid(text: bytes) -> int | None:
    """Pure: ``b"1234\\n"`` → 1234; anything else → None."""
    first = text.split(b"\n", 1)[0].strip()
    return int(first) if first.isdigit() and 0 < int(first) < 1 << 32 else None


def _read_start(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, PID_BYTES)


def _write_pid(fd: int, pid: int) -> None:
    text = f"{pid}\n".encode()
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, text.ljust(PID_BYTES, b" ")[:PID_BYTES])  # overwrite a longer old pid
    with contextlib.suppress(OSError):
        os.ftruncate(fd, PID_BYTES)


if sys.platform == "win32":
    import msvcrt

    def _try_lock(fd: int) -> bool:
        os.lseek(fd, LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # fails at once if held elsewhere
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, LOCK_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
