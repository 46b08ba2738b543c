"""The keeper's watch on what gets nodes disqualified: storage, disk, identity, clock.

Every ``CHECK_SECONDS`` one look (``look_at_node``) reads the node's config dir for its
storage directory and identity key, stats the storage directory, reads its verification
file and the disk's free space. The look runs in a daemon thread of its own, awaited
with a deadline (``LOOK_TIMEOUT_SECONDS``): a network share that stopped answering
hangs ``stat`` in the kernel, and neither the keeper's loop nor its stop may wait for it
(a daemon thread is not joined at exit; ``asyncio.to_thread`` would be). While a look
hangs, no second one starts and the storage counts as not answering.

What the look means is ``watch_rules`` (pure). A storage problem holds the node
(``Supervisor.hold``: stopped gracefully now, started again by ``release`` when the
directory is back with this node's verification file); every problem goes to the error
index once when it appears, with its fix, and the ``reason`` the alerts map to a kind
(``keeper.alerting``). The clock is not looked at here: ``ServerClock`` takes the
``Date`` header of the control plane's answers the update checks already get.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import stat
import threading
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from nodekeeper.keeper.config import KeeperConfig
from nodekeeper.keeper.watch_rules import (
    VERIFICATION_FILE,
    IdentityState,
    Problem,
    StorageLook,
    clock_offset,
    clock_problem,
    disk_problem,
    identity_problem,
    storage_problem,
)
from nodekeeper.launcher.textfile import TextDecodeError, read_config_text

if TYPE_CHECKING:
    from nodekeeper.keeper.supervisor import Hold
    from nodekeeper.updater.interfaces import ErrorSink

log = logging.getLogger("nodekeeper.keeper.watch")

CHECK_SECONDS = 2.0
LOOK_TIMEOUT_SECONDS = 10.0
# The reference node's files (src/storagenode/config.py) and Storj's.
NODE_TOML = "config.toml"
STORJ_YAML = "config.yaml"
IDENTITY_FILE = "identity.key"
_YAML_KEY = r"""^\s*{key}\s*:\s*["']?([^"'#\n]*?)["']?\s*(?:#.*)?$"""
# The marker is one line; a big file there is not ours, and is not read whole.
MARKER_MAX_BYTES = 4096


# -- one look (blocking: runs in the watch's thread) ---------------------------------------


@dataclass(frozen=True)
class NodePaths:
    """Where the node keeps its storage and identity, from its config file; all None
    when it is not set up (no config file)."""

    config_file: Path | None
    storage_dir: Path | None
    identity: Path | None


def _yaml_value(text: str, key: str) -> str | None:
    found = re.search(_YAML_KEY.format(key=re.escape(key)), text, re.M)
    return found.group(1).strip() or None if found else None


def node_paths(config_dir: Path) -> NodePaths:
    """The reference node's ``config.toml`` (``storage_dir``; identity.key beside it) or
    a Storj node's ``config.yaml`` (``storage.path``, ``identity.key-path``). A file that
    cannot be read or parsed gives no storage path: the node will say why it cannot
    start, and the keeper does not guess."""
    toml = config_dir / NODE_TOML
    if toml.is_file():
        try:
            raw = tomllib.loads(read_config_text(toml))
        except (OSError, TextDecodeError, tomllib.TOMLDecodeError) as exc:
            log.debug("cannot read %s: %s", toml, exc)
            return NodePaths(toml, None, config_dir / IDENTITY_FILE)
        storage = raw.get("storage_dir")
        return NodePaths(
            toml,
            Path(storage) if isinstance(storage, str) and storage else None,
            config_dir / IDENTITY_FILE,
        )
    yaml = config_dir / STORJ_YAML
    if yaml.is_file():
        try:
            text = read_config_text(yaml)
        except (OSError, TextDecodeError) as exc:
            log.debug("cannot read %s: %s", yaml, exc)
            return NodePaths(yaml, None, None)
        storage = _yaml_value(text, "storage.path")
        key = _yaml_value(text, "identity.key-path")
        return NodePaths(yaml, Path(storage) if storage else None, Path(key) if key else None)
    return NodePaths(None, None, None)


def look_at_storage(path: Path) -> StorageLook:
    """Stat ``path``, read its verification file and its disk's free space (blocking)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return StorageLook(path, "missing")
    except OSError as exc:
        return StorageLook(path, "unreadable", exc.strerror or str(exc))
    if not stat.S_ISDIR(mode):
        return StorageLook(path, "not-dir")
    marker: bytes | None = None
    marker_error: str | None = None
    try:
        with open(path / VERIFICATION_FILE, "rb") as fh:
            marker = fh.read(MARKER_MAX_BYTES)
    except FileNotFoundError:
        marker = None
    except OSError as exc:
        marker_error = exc.strerror or str(exc)
    try:
        usage = shutil.disk_usage(path)
        free, total = usage.free, usage.total
    except OSError:
        free = total = None
    return StorageLook(path, "ok", "", marker, marker_error, free, total)


@dataclass(frozen=True)
class Observation:
    """One look at the node: its paths, its storage (None: no storage dir known), its
    identity and the node ID the verification file must name."""

    paths: NodePaths
    storage: StorageLook | None
    identity_state: IdentityState
    identity_detail: str = ""
    node_id_text: str | None = None
    node_id_raw: bytes | None = None


def look_at_node(
    config_dir: Path,
    seen: Callable[[NodePaths], None] = lambda _paths: None,
    *,
    parse_key: bool = True,
) -> Observation:
    """One look; ``seen`` is told the paths as soon as they are read, so a look that
    then hangs on the storage still says which directory did not answer. ``parse_key``:
    parse the identity key for the node ID the verification file must name; without it
    (a keeper that must not load ``cryptography``, see NodeWatch) a key that can be read
    is fine and any non-empty verification file counts."""
    paths = node_paths(config_dir)
    seen(paths)
    state: IdentityState = "not-set-up"
    detail = ""
    node_id_text = node_id_raw = None
    if paths.config_file is not None and paths.identity is not None:
        try:
            pem = paths.identity.read_bytes()
        except FileNotFoundError:
            state = "missing"
        except OSError as exc:
            state, detail = "unreadable", exc.strerror or str(exc)
        else:
            state = "ok"
            if parse_key:
                from nodekeeper.identity import IdentityError, parse_identity

                try:
                    identity = parse_identity(pem, paths.identity)
                except IdentityError as exc:
                    # A Storj key is not ours to parse; the reference node's must parse.
                    if paths.config_file.name == NODE_TOML:
                        state, detail = "unreadable", str(exc)
                else:
                    node_id_text, node_id_raw = identity.node_id_text, identity.node_id
    storage = look_at_storage(paths.storage_dir) if paths.storage_dir is not None else None
    return Observation(paths, storage, state, detail, node_id_text, node_id_raw)


def problems_of(
    observation: Observation, clock: tuple[float | None, str] | None = None
) -> dict[str, Problem]:
    """Every problem one observation (and the clock's last offset) shows, by kind."""
    found: list[Problem | None] = []
    storage = observation.storage
    if storage is not None:
        found.append(storage_problem(storage, observation.node_id_text, observation.node_id_raw))
        found.append(disk_problem(storage.free, storage.total, storage.path))
    if observation.paths.identity is not None:
        found.append(
            identity_problem(
                observation.identity_state, observation.paths.identity, observation.identity_detail
            )
        )
    if clock is not None:
        found.append(clock_problem(*clock))
    return {p.kind: p for p in found if p is not None}


# -- the clock, from the control plane's answers -------------------------------------------


class ServerClock:
    """The offset of this machine's clock from the last ``Date`` header a control-plane
    answer carried. ``attach`` hooks an httpx client (the update check's): the hook runs
    in whatever thread the request runs in, so the three fields are set under a lock."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.offset: float | None = None
        self.server = ""
        self.at: float | None = None

    def observe(self, date_header: str | None, server: str) -> None:
        now = self._clock()
        offset = clock_offset(date_header, now)
        if offset is None:
            return
        with self._lock:
            self.offset, self.server, self.at = offset, server, now

    def reading(self) -> tuple[float | None, str] | None:
        with self._lock:
            return None if self.offset is None else (self.offset, self.server)

    def attach(self, client: Any) -> Any:
        """Add a response hook to an ``httpx.Client``; returns the client."""

        def hook(response: Any) -> None:
            with contextlib.suppress(Exception):  # a clock reading never fails a request
                self.observe(response.headers.get("date"), str(response.request.url.host))

        client.event_hooks["response"] = [*client.event_hooks.get("response", []), hook]
        return client

    def snapshot(self) -> dict[str, Any] | None:
        with self._lock:
            if self.offset is None:
                return None
            return {"offset_seconds": round(self.offset, 1), "server": self.server, "at": self.at}


# -- the watch -----------------------------------------------------------------------------


class Holdable(Protocol):
    """The supervisor's hold (``keeper.supervisor.Supervisor``)."""

    @property
    def held(self) -> Hold | None: ...

    def hold(self, reason: str, fix: str) -> None: ...

    def release(self) -> None: ...


class NodeWatch:
    def __init__(
        self,
        config: KeeperConfig,
        node: Holdable,
        errors: ErrorSink | None,
        clock: ServerClock | None = None,
        *,
        interval: float = CHECK_SECONDS,
        timeout: float = LOOK_TIMEOUT_SECONDS,
        parse_key: bool = True,
    ) -> None:
        """``parse_key``: read the node ID from its identity key, to tell another node's
        verification file from this one's. It loads ``cryptography`` (~7 MB): the wiring
        turns it on where the reports load it anyway (a keeper with ``[update]``) and
        leaves the bare supervisor's idle memory alone (bench/supervisor_bench.py)."""
        self.config = config
        self.parse_key = parse_key
        self.node = node
        self.errors = errors
        self.clock = clock
        self.interval = interval
        self.timeout = timeout
        self.problems: dict[str, Problem] = {}
        self._since: dict[str, float] = {}
        self._holding = False  # the node is held by this watch (only it releases)
        self._last: Observation | None = None
        self._paths: NodePaths | None = None  # the last paths read (a hung look's too)
        self._checked_at: float | None = None
        self._looking_since: float | None = None  # monotonic; a look in its thread
        self._lock = threading.Lock()

    async def run(self) -> None:
        """Look every ``interval`` seconds until cancelled (the keeper's stop)."""
        while True:
            await self.tick()
            await asyncio.sleep(self.interval)

    async def tick(self) -> dict[str, Problem]:
        """One look, its problems acted on; returns them."""
        observation = await self._look()
        if observation is None:  # timed out, or the last look still hangs
            problems = self._timed_out()
        else:
            self._last = observation
            problems = problems_of(observation, self.clock.reading() if self.clock else None)
        self._checked_at = time.time()
        self._apply(problems)
        return problems

    def _timed_out(self) -> dict[str, Problem]:
        """The storage did not answer: hold; the other problems stay as last seen."""
        problems = {k: p for k, p in self.problems.items() if k != "storage_missing"}
        paths = self._paths
        if paths is None or paths.storage_dir is None:
            return problems
        look = StorageLook(paths.storage_dir, "timeout", f"{self.timeout:g} s")
        problem = storage_problem(look, None)
        assert problem is not None
        problems[problem.kind] = problem
        return problems

    async def _look(self) -> Observation | None:
        with self._lock:
            if self._looking_since is not None:
                return None
            self._looking_since = time.monotonic()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Observation | None] = loop.create_future()

        def settle(result: Observation | None) -> None:
            if not future.done():
                future.set_result(result)

        def work() -> None:
            result: Observation | None = None
            try:
                result = look_at_node(
                    self.config.node_config_path(), self._seen, parse_key=self.parse_key
                )
            except Exception:  # the look does not raise; this is the backstop
                log.exception("the storage look failed")
            finally:
                with self._lock:
                    self._looking_since = None
            with contextlib.suppress(RuntimeError):  # the loop is gone: the keeper stopped
                loop.call_soon_threadsafe(settle, result)

        threading.Thread(target=work, name="storage-look", daemon=True).start()
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.timeout)
        except TimeoutError:
            return None

    def _seen(self, paths: NodePaths) -> None:
        self._paths = paths  # one reference, replaced whole: no lock needed

    def _apply(self, problems: dict[str, Problem]) -> None:
        storage = problems.get("storage_missing")
        if storage is not None:
            held = self.node.held
            if not self._holding or held is None or held.reason != storage.message:
                self.node.hold(storage.message, storage.fix)
                self._holding = True
        elif self._holding:
            self._holding = False
            log.info("the storage directory is back; starting the node")
            self.node.release()
        now = time.time()
        for kind, problem in problems.items():
            if kind not in self.problems:
                self._since[kind] = now
                # WARNING: the log handler copies ERROR lines to the index; this one is
                # indexed below with its fields.
                log.warning("%s. Fix: %s", problem.message, problem.fix)
                self._record(problem)
        for kind in self.problems.keys() - problems.keys():
            self._since.pop(kind, None)
            log.info("resolved: %s", self.problems[kind].title)
        self.problems = problems

    def _record(self, problem: Problem) -> None:
        if self.errors is None:
            return
        try:
            self.errors.record(
                "keeper",
                logging.ERROR,
                problem.message,
                reason=problem.reason,
                fix=problem.fix,
                title=problem.title,
            )
        except Exception:
            log.exception("cannot write the error index")

    def snapshot(self) -> dict[str, Any]:
        last, paths = self._last, self._paths
        storage = last.storage if last is not None else None
        return {
            "interval_seconds": self.interval,
            "checked_at": self._checked_at,
            "storage_dir": str(paths.storage_dir) if paths and paths.storage_dir else None,
            "disk": (
                {"free": storage.free, "total": storage.total}
                if storage is not None and storage.total
                else None
            ),
            "clock": self.clock.snapshot() if self.clock else None,
            "problems": {
                kind: {
                    "severity": p.severity,
                    "title": p.title,
                    "message": p.message,
                    "fix": p.fix,
                    "since": self._since.get(kind),
                }
                for kind, p in self.problems.items()
            },
        }
