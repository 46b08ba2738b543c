"""One quickstart per data dir: an exclusive lock the OS releases when the process dies.

A second quickstart on the same data dir would share its ports, its keeper config and
its node; ending the first one's processes from a second terminal would surprise
whoever runs it, so the second run refuses and names the first one's pid instead. A
lock rather than a pid file: a run that was killed holds nothing, so the next run never
has to guess whether a pid is stale. The lock is the keeper's own mechanism
(:mod:`nodekeeper.keeper.instance_lock`) on another file, ``quickstart.lock``.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

from nodekeeper.cli.errors import EXIT_FAILURE, EXIT_USAGE, CommandError
from nodekeeper.keeper import instance_lock

LOCK_FILE = "quickstart.lock"


class InstanceLock:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._lock: instance_lock.InstanceLock | None = None

    def __enter__(self) -> InstanceLock:
        try:
            self._lock = instance_lock.acquire(self.data_dir, wait=0, name=LOCK_FILE)
        except instance_lock.InstanceLocked as exc:
            kill = f"kill {exc.pid}" if exc.pid is not None else "end it"
            raise CommandError(
                f"another quickstart ({exc.holder}) is running on {self.data_dir}: stop it "
                f"first (Ctrl-C in its terminal, or {kill}), or pass another --data-dir",
                EXIT_FAILURE,
            ) from None
        except instance_lock.LockUnavailable as exc:
            raise CommandError(
                f"{exc}: --data-dir must be a directory this user can write", EXIT_USAGE
            ) from None
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None
