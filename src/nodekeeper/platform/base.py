"""The platform interface the keeper's supervisor uses to run and constrain the node.

One module per OS implements :class:`Platform` (``posix.py``, ``windows.py``); the
supervisor only ever talks to this interface, so every OS-specific decision (process
groups vs. Job Objects, SIGTERM vs. CTRL_BREAK, cgroups vs. rlimits) lives in the platform
module and nowhere else.

Contract shared by every implementation:

- The node runs in its own process group (POSIX: a new session, so the keeper's
  terminal signals do not reach it) or Job Object (Windows), so that its whole tree can
  be stopped, measured and killed as one unit.
- Limits are applied as the process starts (before it can allocate or fork), never
  afterwards. Each limit that was asked for reports the mechanism that enforces it, or
  ``"none"`` with the reason in ``notes``: status output must never claim a limit that is
  not in force.
- Nothing here blocks for long: ``start`` is async; the other calls are quick system
  calls that the supervisor may make from the event loop.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The mechanism names a report may hold. Platforms may add their own strings; these are
# the ones the status API, the tests and the documentation know about.
MECH_NONE = "none"
MECH_CGROUP_MEMORY = "cgroup-v2 memory.max"
MECH_RLIMIT_AS = "rlimit-as"
MECH_CGROUP_CPU = "cgroup-v2 cpu.max"
MECH_SCHED_AFFINITY = "sched_setaffinity"
MECH_NICE = "nice"
MECH_JOB_MEMORY = "job-object process memory limit"
MECH_JOB_CPU_RATE = "job-object cpu rate control"
MECH_JOB_AFFINITY = "job-object affinity"
MECH_PRIORITY_CLASS = "below-normal priority class"


@dataclass(frozen=True)
class ResourceLimits:
    """What the node may use. ``None`` / ``False`` means "do not limit"."""

    # Hard memory ceiling for the whole tree, in bytes (the OS enforces it; the node fails
    # to allocate or is killed). The soft limit is the supervisor's business, not this.
    memory_hard_bytes: int | None = None
    # Share of ONE core the tree may use, in percent: 150.0 = one and a half cores.
    cpu_rate_percent: float | None = None
    # Logical CPU numbers the tree may run on (already resolved from a count by the caller).
    cpu_cores: tuple[int, ...] | None = None
    # Run below normal priority (POSIX nice 10; Windows BELOW_NORMAL_PRIORITY_CLASS).
    below_normal_priority: bool = False


@dataclass(frozen=True)
class LimitReport:
    """Which mechanism enforces each limit, as applied to one process tree."""

    memory_hard: str = MECH_NONE
    cpu_rate: str = MECH_NONE
    affinity: str = MECH_NONE
    priority: str = MECH_NONE
    # Why a limit that was asked for is weaker than hoped or absent, one line each,
    # e.g. "cgroup v2 has no memory controller here; using RLIMIT_AS".
    notes: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "memory_hard": self.memory_hard,
            "cpu_rate": self.cpu_rate,
            "affinity": self.affinity,
            "priority": self.priority,
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class LaunchSpec:
    """Everything needed to start the node once."""

    argv: Sequence[str]
    # The complete environment of the child (not merged with the keeper's by the platform).
    env: Mapping[str, str]
    cwd: Path | None = None
    limits: ResourceLimits = field(default_factory=ResourceLimits)
    # A short identifier, used for the cgroup / Job Object name; [a-z0-9-] only.
    name: str = "storagenode"


@dataclass(frozen=True)
class Usage:
    """One reading of the tree's resource use."""

    # The figure compared with the memory limits: the tree's private bytes on Windows;
    # on Linux the cgroup's memory.current when the tree has its own cgroup, else the
    # sum of the tree's RSS.
    memory_bytes: int
    # What memory_bytes measures: "private", "rss", "cgroup".
    memory_kind: str
    # user + system CPU seconds used by the tree so far (children that already exited may
    # be missing; the supervisor derives a rate from successive readings and clamps at 0).
    cpu_seconds: float
    # Number of live processes in the tree, the node itself included.
    processes: int


class ProcessHandle(ABC):
    """A started node: its pid, its output pipes, and a way to await its exit."""

    pid: int
    # Line-oriented reading is done by the supervisor; the platform only supplies readers.
    stdout: asyncio.StreamReader
    stderr: asyncio.StreamReader
    limits: LimitReport

    @property
    @abstractmethod
    def returncode(self) -> int | None:
        """The exit status once the process has exited, else ``None``.

        POSIX: negative signal number when killed by a signal (as ``subprocess``)."""

    @abstractmethod
    async def wait(self) -> int:
        """Wait for the node itself (the tree's root) to exit; returns its exit status."""

    def detach(self) -> bool:
        """Leave the node running for the next keeper (a hand-over, decision 063): stop
        reading its output once everything sent so far is in ``stdout``/``stderr``, which
        then end. Blocking. False where the node cannot outlive this keeper (a direct
        child dies with it): the caller stops it instead."""
        return False

    @abstractmethod
    def identity(self) -> dict[str, Any]:
        """A JSON-able record that lets a later keeper find this tree again.

        Written to the keeper's state directory while the node runs, so that a keeper
        restarted after being killed can remove a tree its predecessor left behind
        (see :meth:`Platform.kill_leftover`)."""


class AdoptionRefused(Exception):
    """A node left running by a previous keeper that this keeper cannot take over; the
    message says why (the caller restarts the node and says so)."""


class SubprocessHandle(ProcessHandle):
    """The part both platforms share: the node is an asyncio subprocess with pipes."""

    def __init__(self, proc: asyncio.subprocess.Process, limits: LimitReport) -> None:
        self._proc = proc
        self.pid = proc.pid
        assert proc.stdout is not None and proc.stderr is not None
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.limits = limits

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    async def wait(self) -> int:
        return await self._proc.wait()


class Platform(ABC):
    """Start, stop, measure and constrain the node's process tree on one OS."""

    #: "posix" or "windows"; shown in status output.
    name: str
    #: The human name of the graceful stop signal ("SIGTERM", "CTRL_BREAK_EVENT").
    graceful_signal_name: str

    @abstractmethod
    async def start(self, spec: LaunchSpec) -> ProcessHandle:
        """Start ``spec.argv`` in a new process group / Job Object with piped stdout and
        stderr (stdin is the null device), with ``spec.limits`` applied before the program
        runs. The tree must not outlive the keeper if the keeper dies abruptly (POSIX:
        parent-death signal; Windows: JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE).

        Raises ``OSError`` when the program cannot be started (missing, not executable)."""

    @abstractmethod
    def request_stop(self, handle: ProcessHandle) -> bool:
        """Ask the node to stop gracefully (SIGTERM to the group; CTRL_BREAK_EVENT to the
        process group on Windows). Returns False when this platform cannot deliver a
        graceful signal to this process (the caller then waits for the shutdown endpoint
        or goes straight to :meth:`kill_tree`). Never raises for an exited process."""

    @abstractmethod
    def kill_tree(self, handle: ProcessHandle) -> None:
        """Kill the node and every descendant at once (SIGKILL to the group and to every
        descendant found, cgroup.kill where available; TerminateJobObject on Windows).
        Idempotent; never raises for processes that are already gone."""

    @abstractmethod
    def usage(self, handle: ProcessHandle) -> Usage | None:
        """Memory and CPU of the tree now, or None once the node has exited."""

    @abstractmethod
    def release(self, handle: ProcessHandle) -> None:
        """Free what ``start`` set up for this tree (cgroup directory, Job Object handle)
        after the node has exited and been waited for. Idempotent."""

    async def adopt(self, identity: Mapping[str, Any]) -> ProcessHandle:
        """Take over the node a previous keeper handed over (or left when it died), as
        described by its :meth:`ProcessHandle.identity`: only a node under a node shim,
        and only the same process (pid and start time). Raises AdoptionRefused."""
        raise AdoptionRefused(f"the {self.name} platform cannot take over a running node")

    @abstractmethod
    def kill_leftover(self, identity: Mapping[str, Any]) -> int:
        """Kill a tree left by a previous keeper, described by
        :meth:`ProcessHandle.identity`. Must check the record still describes the same
        processes (pid plus creation time), never a recycled pid. Returns how many
        processes were killed (0 when nothing was left)."""

    def describe_limits(self, limits: ResourceLimits) -> LimitReport:
        """Which mechanisms :meth:`start` would use for ``limits`` on this machine, without
        starting anything; the status API shows it while no node runs."""
        return LimitReport()
