"""Judging a new version (pure): did it pass probation, and if not, roll back or hold?

Inputs are plain values read from the supervisor (``Supervisor.observe``), so every rule
is a table test. The rules:

- **pass**: the node has been healthy (its probe passed, state ``running``) for the
  whole probation period, counted from the later of the switch and the first healthy
  pulse, *and a pulse answered at the end of it* (a node that hangs half-way has no
  passing pulse after the hang, even while the probe's timeout hides the failure), its
  latest probe passed, and it has not exited once since the switch;
- **fail** at the first exit after the switch (a crash, a hang the supervisor killed, a
  migration that failed), or when it has not become healthy within the start timeout;
- an exit with the node's "not set up" code is the new version's fault only if the old
  one was running healthy before the switch (it read the same config); if the node was
  never set up (first install), the verified version is kept without proof of health:
  there is nothing better to run, and setting the node up needs it installed;
- an exit because the keeper held the node (its storage went away) is nobody's fault:
  ``transient``, like a full disk, and not reported as the release's failure;
- a failure whose output says the disk is full is the machine's, not the version's
  (``transient``): the version is not remembered as failed and is tried again next
  cycle, as the seed document asks for "out of space during migrations".

After a failure: **hold** on the new version if the pulse's ``schema_version`` rose
during its run (a migration ran, the old binary cannot read the database), else **roll
back**. A failure of a first install has nothing to go back to and holds too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

# Lower-cased fragments of the messages a full disk produces: POSIX ENOSPC, SQLite's
# SQLITE_FULL, Windows' ERROR_DISK_FULL and ERROR_HANDLE_DISK_FULL.
OUT_OF_SPACE_MARKERS = (
    "no space left on device",
    "database or disk is full",
    "disk quota exceeded",
    "there is not enough space on the disk",
    "the disk is full",
)


class Exit(Protocol):
    """``keeper.supervisor.ExitView``."""

    number: int
    code: int | None
    reason: str
    detail: str
    output: tuple[str, ...]
    generation: int


class Verdict(StrEnum):
    WAIT = "wait"
    PASS = "pass"
    KEEP_UNPROVEN = "keep-unproven"  # not set up: keep the verified version
    FAIL = "fail"


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    kind: str = ""  # report kind for a failure
    message: str = ""
    transient: bool = False


@dataclass(frozen=True)
class Observation:
    """Monotonic times in seconds; ``exits`` are those since the switch."""

    now: float
    switched_at: float
    state: str
    healthy_since: float | None
    pulse_ok: bool | None
    exits: Sequence[Exit]
    old_was_healthy: bool
    last_ok: float | None = None  # when the latest passing pulse was seen


@dataclass(frozen=True)
class Rules:
    probation: float
    start_timeout: float
    not_set_up_reason: str = "not-set-up"


def exits_of(exits: Sequence[Exit], generation: int) -> list[Exit]:
    """The exits of runs of ``generation`` (the switched-to command) or later, except the
    stop that a switch itself caused: the old command's exits are not the new one's."""
    return [e for e in exits if e.generation >= generation and e.reason != "switched"]


def is_out_of_space(lines: Sequence[str]) -> bool:
    text = "\n".join(lines).lower()
    return any(marker in text for marker in OUT_OF_SPACE_MARKERS)


def judge(obs: Observation, rules: Rules, version: str) -> Judgement:
    if obs.exits:
        return _judge_exit(obs.exits[0], obs, version)
    if obs.state == "running" and obs.healthy_since is not None and obs.pulse_ok:
        if obs.last_ok is None:
            return Judgement(Verdict.WAIT)
        healthy_for = obs.last_ok - max(obs.healthy_since, obs.switched_at)
        if healthy_for >= rules.probation:
            return Judgement(Verdict.PASS)
        return Judgement(Verdict.WAIT)
    if obs.healthy_since is None and obs.now - obs.switched_at >= rules.start_timeout:
        return Judgement(
            Verdict.FAIL,
            "update_failed",
            f"{version} did not answer its probe within {rules.start_timeout:g} s of its start",
        )
    return Judgement(Verdict.WAIT)


def time_limit(obs: Observation, rules: Rules) -> float | None:
    """The monotonic time at which ``judge`` turns a WAIT into a FAIL with nothing else
    happening (the start timeout of a version that never answered), or None: every other
    verdict needs the node to change first (a pulse, an exit), which the supervisor
    signals. The machine sleeps until then or the next change, instead of polling."""
    if obs.healthy_since is None:
        return obs.switched_at + rules.start_timeout
    return None


def _judge_exit(first: Exit, obs: Observation, version: str) -> Judgement:
    if first.reason == "not-set-up":
        if not obs.old_was_healthy:
            return Judgement(Verdict.KEEP_UNPROVEN)
        return Judgement(
            Verdict.FAIL,
            "update_failed",
            f"{version} says the node is not set up (exit {first.code}), but the version "
            "before it ran with the same configuration",
        )
    if first.reason == "held":
        # The keeper stopped the node on purpose (its storage went away, decision 070):
        # nothing is known about the version, so it is not blamed; it goes back to the old
        # one (which starts when the hold ends) and is tried again next cycle.
        return Judgement(
            Verdict.FAIL,
            "node_held",
            f"the keeper held the node stopped during the probation of {version} (see `hold` "
            "in its status)",
            transient=True,
        )
    what = first.detail or f"exit code {first.code}"
    if is_out_of_space(first.output):
        return Judgement(
            Verdict.FAIL,
            "out_of_space",
            f"{version} ran out of disk space ({what}); free some space: the keeper tries "
            "it again next cycle",
            transient=True,
        )
    label = {"hung": "stopped answering", "memory": "went over its memory limit"}.get(
        first.reason, "exited"
    )
    return Judgement(Verdict.FAIL, "update_failed", f"{version} {label} during probation ({what})")


def schema_rose(before: int | None, seen: int | None) -> bool:
    """Whether a migration ran: the pulse showed a higher schema than the old node's."""
    return before is not None and seen is not None and seen > before


class AfterFailure(StrEnum):
    ROLLBACK = "rollback"
    HOLD = "hold"


def after_failure(
    schema_before: int | None, schema_seen: int | None, has_previous: bool
) -> AfterFailure:
    if not has_previous or schema_rose(schema_before, schema_seen):
        return AfterFailure.HOLD
    return AfterFailure.ROLLBACK


def old_refuses_database(exit_code: int | None, downgrade_refused_code: int) -> bool:
    """The old version, started again after a failed update, refused the database as
    newer than itself: a migration ran although no pulse showed it (it failed half-way),
    so the keeper must hold on the new version instead."""
    return exit_code is not None and exit_code == downgrade_refused_code
