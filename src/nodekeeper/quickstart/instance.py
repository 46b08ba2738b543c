"""One quickstart per data dir: an exclusive lock the OS releases when the process dies.

A second quickstart on the same data dir would share its ports, its keeper config and
its node; ending the first one's processes from a second terminal would surprise
whoever runs it, so the second run refuses and names the first one's pid instead. A
lock (flock on POSIX, a locked byte on Windows) rather than a pid file: a run that was
killed holds nothing, so the next run never has to guess whether a pid is stale.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

from nodekeeper.cli import EXIT_FAILURE, CommandError

LOCK_FILE = "quickstart.lock"


class InstanceLock:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None

    def __enter__(self) -> InstanceLock:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_lock(fd):
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise CommandError(
                f"another quickstart (pid {holder}) is running on {self.data_dir}: stop it "
                f"first (Ctrl-C in its terminal, or kill {holder}), or pass another --data-dir",
                EXIT_FAILURE,
            )
        # The holder's pid, for the message above (the lock, not this text, decides).
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the lock
            self._fd = None


def _try_lock(fd: int) -> bool:
    if os.name == "nt":
        import msvcrt

        # Lock a byte far past the pid text, so reading the pid is never blocked.
        os.lseek(fd, 1 << 20, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        finally:
            os.lseek(fd, 0, os.SEEK_SET)
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
