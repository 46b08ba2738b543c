"""A test double for the supervised node process, as the updater sees it.

The update machine talks to the node only through the ``Node`` protocol (set_command,
command, switch, command_generation, observe); in the keeper that is
``keeper.supervisor.Supervisor``, which starts real processes and probes them.
`ScriptedNode` answers the same calls with the same ``RunView``/``ExitView`` records,
but how each version behaves once started is what the test scripted for it: healthy,
exits after N seconds, never gets healthy, fails its migration half-way, runs out of
disk... The database schema is modelled because the machine's rollback-or-hold decision
reads it: a version migrates the database to its own schema when it starts, and refuses
(the downgrade-refused exit code) a database newer than it can read, as the reference
node does.

Time is the real monotonic clock: the machine's probation reads it too, and the tests
use probation periods of a few tens of milliseconds. A run's exit happens when the
scripted delay has passed and someone observes the node (the supervisor likewise only
notices an exit when it looks), and never before a version scripted as healthy was seen
answering once. What the supervisor itself does (restarts under backoff,
stop timeouts, probes) is tested in tests/keeper; here a run that exited stays exited.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nodekeeper.keeper.supervisor import ExitView, RunView, describe_exit

DOWNGRADE_REFUSED = 65  # MachineSettings.downgrade_refused_exit_code's default
NOT_SET_UP = 78


@dataclass(frozen=True)
class Behaviour:
    """How one version runs once started.

    ``schema``: the database schema it migrates to and reads (a newer database is refused
    with exit 65). ``healthy``: whether its probe passes while it runs. ``exits_after``:
    seconds after its start at which the run ends (None: it runs until stopped), with
    ``code``, the supervisor's ``reason`` and the last lines of ``output``."""

    schema: int = 1
    healthy: bool = True
    exits_after: float | None = None
    code: int | None = 1
    reason: str = "crash"
    output: tuple[str, ...] = ()
    migrates: bool = True  # False: dies before it touches the database


HEALTHY = Behaviour()


def healthy(schema: int = 1) -> Behaviour:
    return Behaviour(schema=schema)


def crashes_at_start() -> Behaviour:
    """Dies at once with a traceback (exit 1), before touching the database."""
    return Behaviour(healthy=False, exits_after=0.0, migrates=False)


def crashes_after(seconds: float, schema: int = 1, reason: str = "crash") -> Behaviour:
    """Migrates, answers its probe, then ends after ``seconds`` (``reason="hung"``: the
    supervisor found it hung and killed it)."""
    code = -9 if reason == "hung" else 1
    return Behaviour(schema=schema, exits_after=seconds, code=code, reason=reason)


def never_healthy() -> Behaviour:
    """Runs but never answers its probe (the start timeout decides)."""
    return Behaviour(healthy=False)


def migration_fails_half_way(schema: int) -> Behaviour:
    """Its first migration commits (the database is at ``schema`` now), the next fails:
    exit 70 without ever answering a probe."""
    return Behaviour(schema=schema, healthy=False, exits_after=0.0, code=70)


def out_of_space() -> Behaviour:
    """Its migration finds the disk full: exit 70 saying so, the database untouched."""
    line = '{"msg": "migration 5 failed: database or disk is full"}'
    return Behaviour(healthy=False, exits_after=0.0, code=70, output=(line,), migrates=False)


@dataclass
class Run:
    """One start of one command."""

    version: str | None
    generation: int
    behaviour: Behaviour
    started: float
    exit: ExitView | None = None
    healthy_since: float | None = None
    last_ok: float | None = None
    seen_healthy: bool = False  # a healthy pulse was observed (the probe saw it)


@dataclass
class ScriptedNode:
    """Stands for the supervised node process: the updater's ``Node`` protocol over
    scripted behaviours (module docstring). ``started`` lists the version of every run
    in order; ``switches`` the versions the updater switched to."""

    versions_dir: Path  # Layout.versions / process: an argv names its version's dir here
    set_up: bool = True
    database_schema: int | None = None  # None: no database yet
    scripts: dict[str, Behaviour] = field(default_factory=dict)
    started: list[str | None] = field(default_factory=list)
    switches: list[str | None] = field(default_factory=list)
    exits: list[ExitView] = field(default_factory=list)
    # How often its scripted probe answers: each answer is a change the machine hears
    # of (``next_change``), as the supervisor signals each real probe result.
    probe_interval: float = 0.005
    # The keeper holds the node stopped (Supervisor.hold): what observe() says.
    held: bool = False
    _argv: list[str] | None = None
    _generation: int = 0
    _run: Run | None = None

    def script(self, version: str, behaviour: Behaviour) -> None:
        self.scripts[version] = behaviour

    # -- the Node protocol ------------------------------------------------------------

    def set_command(self, argv: list[str] | None) -> None:
        self._argv = list(argv) if argv is not None else None
        self._generation += 1

    @property
    def command(self) -> list[str] | None:
        return list(self._argv) if self._argv is not None else None

    @property
    def command_generation(self) -> int:
        return self._generation

    async def switch(self, argv: list[str]) -> int:
        self.set_command(argv)
        run = self._run
        if run is not None and run.exit is None:
            self._end(run, 0, "switched")
        self.switches.append(self.version_of(argv))
        self._start()
        return self._generation

    def next_change(self) -> asyncio.Event:
        """Set at the next probe answer: the scripted runs change with time (an exit
        due, a pulse that moves ``last_ok``), which ``observe`` computes when asked."""
        event = asyncio.Event()
        asyncio.get_running_loop().call_later(self.probe_interval, event.set)
        return event

    def observe(self) -> RunView:
        run = self._advance()
        pulse = None
        if run is not None and run.exit is None and run.healthy_since is not None:
            pulse = {"version": run.version, "schema_version": self.database_schema}
            run.seen_healthy = True
        return RunView(
            generation=run.generation if run else 0,
            spawns=len(self.started),
            exits=len(self.exits),
            state=self.state(),
            healthy_since_mono=run.healthy_since if run and run.exit is None else None,
            pulse_ok=True if pulse else None,
            last_ok_mono=run.last_ok if run else None,
            pulse=pulse,
            recent_exits=tuple(self.exits[-20:]),
            held=self.held,
        )

    # -- what the supervisor would do -------------------------------------------------

    def start(self) -> None:
        """The supervisor's first start, after the machine's recovery set the command."""
        self._start()

    def setup_done(self) -> None:
        """The operator ran setup: the supervisor's recheck starts the command again."""
        self.set_up = True
        self._start()

    def state(self) -> str:
        run = self._run
        if run is None:
            return "stopped"
        if run.exit is None:
            return "running" if run.healthy_since is not None else "starting"
        return "needs-setup" if run.exit.reason == "not-set-up" else "stopped"

    def running_version(self) -> str | None:
        """The version serving right now (None: nothing answers)."""
        run = self._advance()
        return run.version if run and run.exit is None and run.healthy_since else None

    def version_of(self, argv: list[str] | None) -> str | None:
        for arg in argv or ():
            path = Path(arg)
            if path.parent == self.versions_dir:
                return path.name
        return None

    # -- runs --------------------------------------------------------------------------

    def _start(self) -> None:
        if self._argv is None:
            self._run = None
            return
        version = self.version_of(self._argv)
        behaviour = self.scripts.get(version or "", HEALTHY)
        now = time.monotonic()
        run = Run(version, self._generation, behaviour, now)
        self._run = run
        self.started.append(version)
        if not self.set_up:
            self._end(run, NOT_SET_UP, "not-set-up")
        elif self.database_schema is not None and self.database_schema > behaviour.schema:
            self._end(run, DOWNGRADE_REFUSED, "crash")
        else:
            if behaviour.migrates:
                self.database_schema = max(self.database_schema or 0, behaviour.schema)
            if behaviour.healthy:
                run.healthy_since = now
            self._advance()

    def _advance(self) -> Run | None:
        run = self._run
        if run is None or run.exit is not None:
            return run
        now = time.monotonic()
        behaviour = run.behaviour
        # A healthy version's exit comes after one observation saw it healthy, however
        # late the first look comes on a loaded machine: "it answered, then it died".
        due = behaviour.exits_after is not None and now >= run.started + behaviour.exits_after
        if due and (run.seen_healthy or not behaviour.healthy):
            self._end(run, behaviour.code, behaviour.reason, behaviour.output)
        elif run.healthy_since is not None:
            run.last_ok = now  # its probe passes as long as it runs
        return run

    def _end(self, run: Run, code: int | None, reason: str, output: tuple[str, ...] = ()) -> None:
        run.exit = ExitView(
            number=len(self.exits) + 1,
            code=code,
            reason=reason,
            detail=describe_exit(code),
            output=output,
            generation=run.generation,
        )
        self.exits.append(run.exit)


def describe(node: ScriptedNode) -> dict[str, Any]:
    """What a failed assertion shows of the node."""
    return {
        "started": node.started,
        "switches": node.switches,
        "state": node.state(),
        "schema": node.database_schema,
        "exits": [(e.generation, e.reason, e.code) for e in node.exits],
    }
