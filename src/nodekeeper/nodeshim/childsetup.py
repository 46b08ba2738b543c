"""What runs in the node's process between fork and exec on Linux: die with the parent,
join the cgroup, the address-space limit, core affinity, a lower priority.

Limits go here, not after the start: by then the node could already have allocated or
forked. Shared by the keeper's direct start (``platform.posix``) and the node shim, whose
node dies with the shim instead of the keeper.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Callable, Sequence

if os.name != "nt":
    import resource  # here, not in the child: no imports between fork and exec

PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    # Resolved in the parent: after fork only async-signal-safe work should happen, and
    # dlopen is not that.
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    return libc.prctl  # type: ignore[no-any-return]


_prctl = _load_prctl()


def child_setup(
    *,
    parent_pid: int,
    procs_file: str | None,
    rlimit_as: int | None,
    cores: Sequence[int] | None,
    nice: int | None,
) -> Callable[[], None]:
    """The ``preexec_fn`` for the node. ``parent_pid`` is the process the node must die
    with (the keeper, or the shim)."""

    def setup() -> None:
        if _prctl is not None:
            _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            # The parent may have died between fork and prctl; then no signal would come.
            if os.getppid() != parent_pid:
                os._exit(1)
        if procs_file is not None:
            # Join the cgroup before exec, so that every descendant is born inside it.
            with contextlib.suppress(OSError), open(procs_file, "w") as fh:
                fh.write(str(os.getpid()))
        if rlimit_as is not None:
            resource.setrlimit(resource.RLIMIT_AS, (rlimit_as, rlimit_as))
        if cores is not None:
            os.sched_setaffinity(0, cores)
        if nice is not None:
            current = os.getpriority(os.PRIO_PROCESS, 0)
            os.setpriority(os.PRIO_PROCESS, 0, max(current, nice))

    return setup
