"""The launcher's loop: start the keeper, watch it, hand over, commit or fall back.

Decisions come from ``decide`` (pure); this module carries them out. The state file is
written before each step that depends on it (the pending version before it starts, the
commit or fallback before the next keeper starts), so a launcher killed at any instant
restarts into a state that says what was going on.

The loop sleeps on one event, set by a stop request (signal handler, or the Windows
service's stop from its own thread) and by the keeper's exit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from dataclasses import replace

from nodekeeper import __version__

from . import decide, statefile
from .child import KeeperProcess
from .decide import Launch, State, Verdict
from .health import status_answers
from .manifest import UnusableInstall, keeper_argv, runtime_argv
from .protocol import (
    ENV_LAUNCHER_PID,
    ENV_NODE_CGROUP,
    ENV_RUNNING,
    ENV_STATE_DIR,
    ENV_VERSIONS_DIR,
    EXIT_SELF_UPDATE,
)
from .settings import Settings

log = logging.getLogger("nodekeeper.launcher")


def _name(version: str | None) -> str:
    return version or "the runtime's keeper"


class Launcher:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.state = State()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.child: KeeperProcess | None = None
        self.node_cgroup: str | None = None  # given to keepers: ENV_NODE_CGROUP

    # -- control from outside ----------------------------------------------------------

    def request_stop(self) -> None:
        """Stop the keeper and make :meth:`run` return 0. Safe from signal handlers and
        from any thread (the Windows service calls it from its control handler)."""
        self._stop.set()
        self._wake.set()

    # -- the loop ----------------------------------------------------------------------

    def run(self) -> int:
        s = self.settings
        try:
            s.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            # A keeper must run even so; without a state file it is the committed one
            # (or the runtime's), and hand-overs are refused until the file can be written.
            log.error("cannot create %s: %s", s.state_dir, exc)
        if s.delegated_cgroup:
            self._settle_in_leaf()
        statefile.remove_temp_files(s.state_dir)
        # A request is only valid with the exit code that goes with it; one left over from
        # a launcher that died in between is stale (the keeper asks again next cycle).
        statefile.remove_request(s.state_dir)
        self.state = self._load()
        before = self.state.current
        self.state, launch = decide.at_boot(self.state, time.time(), __version__)
        if before is not None and self.state.current is None:
            log.info(
                "the installed keeper %s is newer than the self-updated %s: running it",
                __version__,
                before,
            )
        self._save()
        failures = 0
        while not self._stop.is_set():
            child, launch = self._start(launch)
            if child is None:  # not even the runtime's keeper starts: wait, try again
                failures += 1
                if self._sleep(
                    decide.restart_delay(failures, s.backoff_initial_seconds, s.backoff_max_seconds)
                ):
                    break
                launch = Launch(self.state.current, probation=False)
                continue
            started = time.monotonic()
            if launch.probation:
                verdict = self._probation(child, started)
                if verdict is None:  # stop requested
                    self.state = decide.stopped_during_probation(self.state)
                    break
                if verdict is Verdict.COMMIT:
                    self.state = decide.commit(self.state, time.time())
                    self._save()
                    log.info("keeper %s passed probation: committed", launch.version)
                else:
                    self._fail_probation(child, launch, verdict)
                    launch = Launch(self.state.current, probation=False)
                    continue
            code = self._wait_exit(child)
            if code is None:  # stop requested
                break
            ran = time.monotonic() - started
            if code == EXIT_SELF_UPDATE:
                honoured, launch = self._hand_over()
                if honoured:  # a deliberate exit: start the next keeper at once
                    continue
            failures = decide.failures_after_exit(failures, ran, s.backoff_reset_seconds)
            delay = decide.restart_delay(failures, s.backoff_initial_seconds, s.backoff_max_seconds)
            log.warning(
                "keeper exited with code %s after %.1f s; starting it again in %.1f s",
                code,
                ran,
                delay,
            )
            if self._sleep(delay):
                break
            launch = Launch(self.state.current, probation=False)
        self._shutdown()
        return 0

    # -- steps -------------------------------------------------------------------------

    def _settle_in_leaf(self) -> None:
        from .cgroupv2 import settle_in_leaf

        root, why = settle_in_leaf()
        if root is None:
            log.warning("--delegated-cgroup: %s; the node's limits fall back as reported", why)
            return
        self.node_cgroup = str(root)
        log.info("moved into the leaf cgroup %s; nodes' cgroups go in %s", root / "launcher", root)

    def _start(self, launch: Launch) -> tuple[KeeperProcess | None, Launch]:
        """Start ``launch.version``, or the next usable one down the chain."""
        tried: list[tuple[str | None, str]] = []
        for version in decide.launch_chain(self.state, launch.version):
            try:
                child = self._spawn(version)
            except (UnusableInstall, OSError) as exc:
                log.error("cannot start keeper %s: %s", _name(version), exc)
                tried.append((version, str(exc)))
                continue
            for bad, why in tried:
                self.state = decide.demote_unusable(self.state, bad, version, why, time.time())
            if tried:
                self._save()
            probation = launch.probation and version == launch.version
            log.info(
                "started keeper %s (pid %d)%s",
                _name(version),
                child.pid,
                " on probation" if probation else "",
            )
            return child, Launch(version, probation)
        return None, launch

    def _spawn(self, version: str | None) -> KeeperProcess:
        s = self.settings
        if version is None:
            argv = runtime_argv(s.python, s.keeper_args())
        else:
            argv = keeper_argv(s.versions_dir / version, version, s.python, s.keeper_args())
        env = dict(os.environ)
        env[ENV_STATE_DIR] = str(s.state_dir)
        env[ENV_VERSIONS_DIR] = str(s.versions_dir)
        env[ENV_RUNNING] = version or ""
        env[ENV_LAUNCHER_PID] = str(os.getpid())
        if self.node_cgroup is not None:
            env[ENV_NODE_CGROUP] = self.node_cgroup
        self._wake.clear()
        self.child = KeeperProcess(argv, env, self._wake.set)
        return self.child

    def _probation(self, child: KeeperProcess, started: float) -> Verdict | None:
        """Watch the new keeper until the verdict; None if a stop was requested."""
        s = self.settings
        answered = False
        while True:
            elapsed = time.monotonic() - started
            verdict = decide.probation_verdict(
                alive=child.returncode is None,
                answered=answered,
                elapsed=elapsed,
                probation=s.probation_seconds,
            )
            if verdict is not Verdict.WAIT:
                return verdict
            if self._stop.is_set():
                return None
            if not answered:
                answered = status_answers(s.status_host, s.status_port, s.probe_timeout_seconds)
                if answered:
                    log.info("keeper status API answered %.1f s after start", elapsed)
            left = s.probation_seconds - (time.monotonic() - started)
            # Once it answered there is nothing to poll: sleep until the end or an exit.
            pause = left if answered else min(s.probe_interval_seconds, left)
            self._wake.wait(max(0.0, pause))
            self._wake.clear()

    def _fail_probation(self, child: KeeperProcess, launch: Launch, verdict: Verdict) -> None:
        code = child.returncode
        if code is None:
            # A hand-back: the keeper leaves the node to the one we fall back to, which
            # takes it over (decision 063). Best effort: without the file it stops the node.
            with contextlib.suppress(OSError):
                statefile.write_handback(self.settings.state_dir, child.pid)
            code = child.stop(self.settings.stop_timeout_seconds)
            statefile.remove_handback(self.settings.state_dir)
            detail = (
                f"its status API did not answer within "
                f"{self.settings.probation_seconds:g} s; stopped (exit code {code})"
            )
        else:
            detail = f"it exited with code {code} during probation"
        self.state = decide.fall_back(self.state, verdict.value, detail, time.time())
        self._save()
        log.error(
            "keeper %s failed probation (%s): falling back to %s",
            launch.version,
            detail,
            _name(self.state.current),
        )

    def _wait_exit(self, child: KeeperProcess) -> int | None:
        while child.returncode is None:
            if self._stop.is_set():
                return None
            self._wake.wait()
            self._wake.clear()
        return child.returncode

    def _hand_over(self) -> tuple[bool, Launch]:
        """Take the keeper's request; False if there was none (then it was a crash)."""
        s = self.settings
        version = statefile.read_request(s.state_dir)
        self.state, launch = decide.on_request(self.state, version, time.time())
        if launch.probation and not self._save():
            # Never switch without the record that lets a restart finish or undo it.
            self.state = replace(self.state, pending=None)
            launch = Launch(self.state.current, probation=False)
        elif not launch.probation:
            self._save()
        statefile.remove_request(s.state_dir)
        if version is None:
            log.error("keeper exited for a self-update but left no readable request")
        elif launch.probation:
            log.info(
                "self-update: starting keeper %s (probation %g s)", version, s.probation_seconds
            )
        else:
            log.warning(
                "self-update to %s refused; starting %s again", version, _name(self.state.current)
            )
        return version is not None, launch

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless a stop comes first; True if it did."""
        deadline = time.monotonic() + seconds
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._wake.wait(left)
            self._wake.clear()
        return True

    def _shutdown(self) -> None:
        child = self.child
        if child is not None and child.returncode is None:
            log.info("stopping keeper (pid %d)", child.pid)
            code = child.stop(self.settings.stop_timeout_seconds)
            log.info("keeper stopped (exit code %s)", code)
        self._save()

    # -- state file --------------------------------------------------------------------

    def _load(self) -> State:
        s = self.settings
        try:
            return statefile.load_state(s.state_dir)
        except (statefile.StateFileError, OSError) as exc:
            # Only a failing disk gets here (writes are atomic). A keeper must still run:
            # start from scratch on the runtime's keeper, keep the bad file for a human.
            kept = statefile.set_aside_damaged(s.state_dir)
            log.error("launcher state unreadable (%s); kept as %s; starting afresh", exc, kept)
            return State()

    def _save(self) -> bool:
        s = self.settings
        state = decide.prune_delivered(self.state, statefile.read_delivered(s.state_dir))
        try:
            statefile.save_state(s.state_dir, state)
        except OSError as exc:
            log.error("cannot write the launcher state in %s: %s", s.state_dir, exc)
            return False
        self.state = state
        return True
