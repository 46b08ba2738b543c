"""cgroup v2 for one process tree: make a child cgroup of the keeper's own (or of the one
the launcher names, under a delegated systemd unit), set limits in it, kill and measure
everything in it. Linux only; every call degrades to "not available" instead of raising,
because most machines (containers, non-root, hybrid hierarchies) will not let the keeper
do all of it, and the caller reports what it got.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
from dataclasses import dataclass
from pathlib import Path

from nodekeeper.launcher.cgroupv2 import find_mount, own_cgroup
from nodekeeper.launcher.protocol import ENV_NODE_CGROUP

__all__ = ["find_mount", "own_cgroup"]

_counter = itertools.count()


def controllers(path: Path) -> set[str]:
    try:
        return set((path / "cgroup.controllers").read_text().split())
    except OSError:
        return set()


@dataclass
class CgroupPlan:
    """Which controllers a new child cgroup will have, before making it."""

    parent: Path | None
    available: set[str]
    reason: str  # why the cgroup or a controller is missing; "" when all is well


def plan(wanted: set[str]) -> CgroupPlan:
    """Find where to make the node's cgroup and which of ``wanted`` it can have.

    A controller is usable in a child when the parent lists it in cgroup.subtree_control;
    the keeper tries to enable it there. That fails with EBUSY when the parent itself holds
    processes (cgroup v2's no-internal-processes rule) - the keeper's own cgroup under a
    systemd unit without Delegate=yes, for example.
    """
    mount = find_mount()
    if mount is None:
        return CgroupPlan(None, set(), "no cgroup v2 hierarchy is mounted")
    parent = node_parent(mount)
    if parent is None or not os.access(parent, os.W_OK):
        return CgroupPlan(None, set(), f"the keeper cannot write to its cgroup under {mount}")
    have = controllers(parent)
    missing = wanted - have
    reasons = []
    if missing:
        reasons.append(
            f"cgroup v2 at {mount} does not offer {', '.join(sorted(missing))} here "
            "(controller bound to cgroup v1 or not delegated)"
        )
    enabled = _enabled(parent)
    for name in sorted((wanted & have) - enabled):
        try:
            (parent / "cgroup.subtree_control").write_text(f"+{name}")
            enabled.add(name)
        except OSError as exc:
            why = "the keeper's cgroup holds processes" if exc.errno == errno.EBUSY else exc
            reasons.append(f"cannot enable the {name} controller in {parent}: {why}")
    return CgroupPlan(parent, wanted & enabled, "; ".join(reasons))


def node_parent(mount: Path) -> Path | None:
    """Where the node's cgroup goes: the cgroup the launcher named (a delegated unit's, with
    the launcher and keepers moved into a leaf beside: launcher/cgroupv2.py), else the
    keeper's own."""
    named = os.environ.get(ENV_NODE_CGROUP)
    if named and Path(named).is_dir():
        return Path(named)
    return own_cgroup(mount)


def _enabled(path: Path) -> set[str]:
    try:
        return set((path / "cgroup.subtree_control").read_text().split())
    except OSError:
        return set()


def remove_stale(parent: Path) -> None:
    """Remove empty cgroups left by keepers that are no longer running (a keeper killed
    with -9 cannot clean up after itself; a non-empty one is left for kill_leftover)."""
    try:
        entries = list(parent.glob("nodekeeper-*"))
    except OSError:
        return
    for path in entries:
        try:
            keeper_pid = int(path.name.rsplit("-", 2)[-2])
        except (ValueError, IndexError):
            continue
        if keeper_pid != os.getpid() and not _alive(keeper_pid):
            remove(path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def create(parent: Path, name: str) -> Path | None:
    """Make a fresh child cgroup named after ``name``, this keeper and a counter."""
    path = parent / f"nodekeeper-{name}-{os.getpid()}-{next(_counter)}"
    try:
        path.mkdir()
    except OSError:
        return None
    return path


def write(path: Path, filename: str, value: str) -> bool:
    try:
        (path / filename).write_text(value)
    except OSError:
        return False
    return True


def pids(path: Path) -> list[int]:
    try:
        return [int(p) for p in (path / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def memory_current(path: Path) -> int | None:
    try:
        return int((path / "memory.current").read_text())
    except (OSError, ValueError):
        return None


def cpu_seconds(path: Path) -> float | None:
    """Total CPU of everything that ever ran in the cgroup (cpu.stat exists even without
    the cpu controller)."""
    try:
        for line in (path / "cpu.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "usage_usec":
                return int(value) / 1e6
    except (OSError, ValueError):
        return None
    return None


def kill(path: Path) -> None:
    """SIGKILL everything in the cgroup: cgroup.kill (Linux 5.14+) catches processes that
    fork while we kill; the per-pid loop covers older kernels."""
    write(path, "cgroup.kill", "1")
    import signal

    for pid in pids(path):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def remove(path: Path) -> bool:
    """Remove an empty cgroup; False while processes are still in it."""
    try:
        path.rmdir()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True
