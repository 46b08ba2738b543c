"""Processes a quickstart run started, remembered on disk so the next run can end them.

A run ends its keeper (and through it the node) itself, and on Linux the keeper also
dies with quickstart (parent-death signal, :mod:`nodekeeper.quickstart.system`). What
neither covers (quickstart killed while its keeper hung, a platform without the
parent-death signal, a run of an older version) is found by the next run in two ways:

- the record ``quickstart-processes.json``: pid and creation time of each keeper and
  node this data dir's runs started. A pid is only ever signalled while its creation
  time still matches: a pid the OS has since reused belongs to someone else;
- a scan for processes whose command line names this data dir's keeper config or node
  config dir (runs that predate the record). Those paths belong to this data dir, so a
  match cannot be an unrelated process.

Keepers are stopped first, gracefully (SIGCONT too, in case one was stopped), because a
keeper stops its node the right way; whatever still runs after the grace is killed.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import signal
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from nodekeeper.durable import write_durably

RECORD_FILE = "quickstart-processes.json"
# psutil's creation time has clock-tick resolution (10 ms on Linux); the same process
# always reads the same value, a reused pid a later one.
SAME_CREATION_SECONDS = 0.05
# A keeper's graceful stop includes the node's (30 s by default), plus start-up slack.
KEEPER_GRACE_SECONDS = 45.0
NODE_GRACE_SECONDS = 30.0
KILL_WAIT_SECONDS = 10.0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Started:
    """One process a run started: which part it is, and who it is."""

    role: str  # "keeper" or "node"
    pid: int
    created: float  # psutil's create_time

    @classmethod
    def of(cls, role: str, pid: int) -> Started | None:
        try:
            return cls(role, pid, psutil.Process(pid).create_time())
        except psutil.Error:
            return None


def is_same_process(recorded: float, actual: float | None) -> bool:
    """``actual`` (the creation time the pid has now) is the recorded process (pure)."""
    return actual is not None and abs(actual - recorded) <= SAME_CREATION_SECONDS


def names_our_paths(cmdline: Sequence[str], keeper_config: Path, node_config_dir: Path) -> str:
    """The role a command line plays for this data dir: "keeper", "node" or "" (pure).

    A keeper runs ``... run --config <keeper_config>``; a node ``... run --config-dir
    <node_config_dir>`` (the keeper expands the same path into the node's arguments)."""
    args = list(cmdline)
    pairs = set(itertools.pairwise(args))
    if ("--config", str(keeper_config)) in pairs and "run" in args:
        return "keeper"
    if ("--config-dir", str(node_config_dir)) in pairs and "run" in args:
        return "node"
    return ""


class RunRecord:
    """The record file: rewritten whole (durably) at each change, removed at a clean end."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / RECORD_FILE
        self._started: list[Started] = []

    def add(self, started: Started | None) -> None:
        if started is None or started in self._started:
            return
        self._started.append(started)
        try:
            payload = json.dumps([asdict(s) for s in self._started], indent=1).encode()
            write_durably(self.path, payload)
        except OSError as exc:
            log.warning("cannot record process %d in %s: %s", started.pid, self.path, exc)

    def load(self) -> list[Started]:
        try:
            rows = json.loads(self.path.read_text())
            return [Started(str(r["role"]), int(r["pid"]), float(r["created"])) for r in rows]
        except (OSError, ValueError, KeyError, TypeError):
            return []

    def clear(self) -> None:
        self._started = []
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def forget_ended(self) -> None:
        """At the end of a run: keep only what still runs (normally nothing: no file)."""
        still = [s for s in self._started if _alive(s) is not None]
        self.clear()
        for started in still:
            self.add(started)


def _alive(started: Started) -> psutil.Process | None:
    """The recorded process if it still runs as itself (not a reused pid, not a zombie)."""
    try:
        proc = psutil.Process(started.pid)
        if not is_same_process(started.created, proc.create_time()):
            return None
        return None if proc.status() == psutil.STATUS_ZOMBIE else proc
    except psutil.Error:
        return None


def _scan(keeper_config: Path, node_config_dir: Path) -> list[Started]:
    found = []
    for proc in psutil.process_iter(["cmdline", "create_time"]):
        if proc.pid == os.getpid():
            continue
        role = names_our_paths(proc.info["cmdline"] or [], keeper_config, node_config_dir)
        if role:
            found.append(Started(role, proc.pid, proc.info["create_time"]))
    return found


def _end(procs: list[psutil.Process], grace: float) -> None:
    """SIGTERM (SIGCONT first: a stopped process cannot act on it), then SIGKILL."""
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            if os.name == "posix":
                proc.send_signal(signal.SIGCONT)
            proc.terminate()
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=KILL_WAIT_SECONDS)


def end_leftovers(
    record: RunRecord,
    keeper_config: Path,
    node_config_dir: Path,
    *,
    keeper_grace: float = KEEPER_GRACE_SECONDS,
    node_grace: float = NODE_GRACE_SECONDS,
) -> list[Started]:
    """End what earlier runs of this data dir left running; returns what was ended."""
    candidates = _unique([*record.load(), *_scan(keeper_config, node_config_dir)])
    ended = []
    for role, grace in (("keeper", keeper_grace), ("node", node_grace)):
        procs = []
        for started in candidates:
            proc = _alive(started) if started.role == role else None
            if proc is not None:
                procs.append(proc)
                ended.append(started)
        if procs:
            _end(procs, grace)
    record.clear()
    return ended


def _unique(items: Iterable[Started]) -> list[Started]:
    seen: dict[int, Started] = {}
    for item in items:
        seen.setdefault(item.pid, item)
    return list(seen.values())
