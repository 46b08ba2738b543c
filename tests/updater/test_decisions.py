"""The pure decisions of the update machine, exhaustively: state transitions, recovery
after a crash in every step, probation verdicts, roll back or hold, what to delete."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from nodekeeper.keeper.commands import update_rows
from nodekeeper.updater import steps as steps_module
from nodekeeper.updater.crashpoints import CrashHook
from nodekeeper.updater.cycle import (
    HEARTBEAT_SECONDS,
    CycleSettings,
    first_check_delay,
    heartbeat_due,
    needs_setup,
    without_rollout,
)
from nodekeeper.updater.errors import (
    DownloadFailed,
    InvalidArtifact,
    OutOfSpace,
    PreflightFailed,
    ReadOnlyFileSystem,
    StorageError,
    VerificationFailed,
)
from nodekeeper.updater.journal import Journal, JournalCorrupt
from nodekeeper.updater.plan import UpdatePlan
from nodekeeper.updater.probation import (
    AfterFailure,
    Observation,
    Rules,
    Verdict,
    after_failure,
    exits_of,
    is_out_of_space,
    judge,
    old_refuses_database,
    schema_rose,
    time_limit,
)
from nodekeeper.updater.recovery import Action, plan_recovery, state_from_disk
from nodekeeper.updater.retention import downloads_to_delete, is_leftover, versions_to_delete
from nodekeeper.updater.schedule import CheckTiming
from nodekeeper.updater.state import (
    NEW_MAY_HAVE_RUN,
    PRE_SWITCH,
    Failure,
    Step,
    UpdateState,
    advance,
    begin,
    committed,
    fail_before_switch,
    held,
    rolled_back,
)
from nodekeeper.updater.steps import STEPS
from nodekeeper.version.schema import Artifact, parse_announcement

ART = Artifact(url="http://cp.example/a.zip", sha256="a" * 64, size=10)


def plan(version: str = "1.1.0") -> UpdatePlan:
    return UpdatePlan("storagenode", version, "linux_amd64", ART, "rollout")


def at_step(step: Step, current: str | None = "1.0.0", target: str = "1.1.0") -> UpdateState:
    state = UpdateState("storagenode", current=current, previous="0.9.0" if current else None)
    state = begin(state, plan(target), now=5.0)
    failure = Failure("update_failed", "crashed") if step in (Step.ROLLBACK, Step.HOLD) else None
    return advance(state, step, schema_before=3, old_healthy=True, failure=failure)


# -- state ---------------------------------------------------------------------------------


@pytest.mark.parametrize("step", list(Step))
def test_state_json_round_trip(step: Step) -> None:
    state = replace(at_step(step), failed=frozenset({"0.9.5"}))
    state = replace(state, held=None)
    again = UpdateState.from_json(json.loads(json.dumps(state.to_json())))
    assert again == state


def test_nothing_installed_counts_as_zero() -> None:
    assert UpdateState("storagenode").current_or_zero == "0.0.0"
    assert UpdateState("storagenode", current="1.2.3").current_or_zero == "1.2.3"


@pytest.mark.parametrize("step", list(Step))
def test_running_version_follows_the_step(step: Step) -> None:
    state = at_step(step)
    expected = "1.1.0" if step in NEW_MAY_HAVE_RUN else "1.0.0"
    assert state.running_version() == expected


@pytest.mark.parametrize("step", list(Step))
def test_keep_holds_current_previous_target_and_origin(step: Step) -> None:
    assert at_step(step).keep() == {"1.0.0", "0.9.0", "1.1.0"}
    assert UpdateState("storagenode", current="2.0.0", previous="1.0.0").keep() == {
        "2.0.0",
        "1.0.0",
    }


def test_commit_moves_current_to_previous_and_forgets_older_failures() -> None:
    state = replace(at_step(Step.COMMIT), failed=frozenset({"1.0.5", "1.2.0"}))
    after = committed(state)
    assert (after.current, after.previous, after.inflight) == ("1.1.0", "1.0.0", None)
    assert after.failed == {"1.2.0"}  # 1.0.5 is below the committed version: noise now
    assert after.held is None


def test_first_install_commit_has_no_previous() -> None:
    after = committed(at_step(Step.COMMIT, current=None))
    assert (after.current, after.previous) == ("1.1.0", None)


def test_rollback_keeps_current_and_remembers_the_target() -> None:
    after = rolled_back(at_step(Step.ROLLBACK))
    assert (after.current, after.previous, after.inflight) == ("1.0.0", "0.9.0", None)
    assert after.failed == {"1.1.0"}


def test_transient_rollback_is_not_remembered() -> None:
    state = at_step(Step.ROLLBACK)
    state = advance(state, Step.ROLLBACK, failure=Failure("out_of_space", "full", transient=True))
    assert rolled_back(state).failed == frozenset()


def test_hold_runs_the_new_version_flagged() -> None:
    after = held(at_step(Step.HOLD), now=42.0)
    assert (after.current, after.previous) == ("1.1.0", "1.0.0")
    assert after.held is not None and after.held.version == "1.1.0"
    assert after.held.since == 42.0 and after.held.message == "crashed"
    assert after.failed == {"1.1.0"}
    # A later good commit clears the flag.
    later = committed(begin(after, plan("1.2.0"), 50.0))
    assert later.held is None and later.current == "1.2.0"


@pytest.mark.parametrize("remember", [True, False])
def test_failure_before_switch(remember: bool) -> None:
    after = fail_before_switch(at_step(Step.PREFLIGHT), remember)
    assert after.current == "1.0.0" and after.inflight is None
    assert after.failed == ({"1.1.0"} if remember else frozenset())


# -- journal (real files) ------------------------------------------------------------------


def test_journal_round_trip_and_no_temp_left(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "state")
    assert journal.read() is None
    state = at_step(Step.PROBATION)
    journal.write(state)
    assert journal.read() == state
    journal.write(committed(state))
    assert journal.read() == committed(state)
    assert [p.name for p in (tmp_path / "state").iterdir()] == ["update.json"]


@pytest.mark.parametrize("content", [b"", b"{", b'{"format": 99}', b'{"format": 1}', b"[]"])
def test_corrupt_journal_is_moved_aside(tmp_path: Path, content: bytes) -> None:
    journal = Journal(tmp_path)
    journal.path.write_bytes(content)
    with pytest.raises(JournalCorrupt) as info:
        journal.read()
    assert not journal.path.exists()
    assert info.value.moved_to is not None and info.value.moved_to.read_bytes() == content
    assert journal.read() is None


# -- recovery: every step × what is installed ------------------------------------------------

ALL_INSTALLED = {"0.9.0", "1.0.0", "1.1.0"}


@pytest.mark.parametrize("step", list(Step))
def test_recovery_of_every_step(step: Step) -> None:
    rec = plan_recovery(at_step(step), ALL_INSTALLED)
    expected = {
        Step.DOWNLOAD: (Action.ABANDON, "1.0.0"),
        Step.VERIFY: (Action.ABANDON, "1.0.0"),
        Step.UNPACK: (Action.ABANDON, "1.0.0"),
        Step.PREFLIGHT: (Action.ABANDON, "1.0.0"),
        Step.SWITCH: (Action.RESUME_PROBATION, "1.1.0"),
        Step.PROBATION: (Action.RESUME_PROBATION, "1.1.0"),
        Step.COMMIT: (Action.FINISH_COMMIT, "1.1.0"),
        Step.ROLLBACK: (Action.FINISH_ROLLBACK, "1.0.0"),
        Step.HOLD: (Action.FINISH_HOLD, "1.1.0"),
    }[step]
    assert (rec.action, rec.run_version) == expected
    if step in PRE_SWITCH:
        assert rec.state.inflight is None and rec.state.current == "1.0.0"
    elif step is Step.SWITCH:
        assert rec.state.inflight is not None and rec.state.inflight.step is Step.PROBATION
    else:
        assert rec.state == at_step(step)


def _subsets(items: set[str]) -> list[frozenset[str]]:
    ordered = sorted(items)
    return [
        frozenset(c) for n in range(len(ordered) + 1) for c in itertools.combinations(ordered, n)
    ]


@pytest.mark.parametrize("step", [None, *Step])
@pytest.mark.parametrize("installed", _subsets(ALL_INSTALLED))
@pytest.mark.parametrize("current", [None, "1.0.0"])
def test_recovery_only_ever_runs_an_installed_version(
    step: Step | None, installed: frozenset[str], current: str | None
) -> None:
    state = (
        UpdateState("storagenode", current=current, previous="0.9.0" if current else None)
        if step is None
        else at_step(step, current=current)
    )
    rec = plan_recovery(state, installed)
    assert rec.run_version is None or rec.run_version in installed
    # The new version is run only where it may already have touched the database.
    if rec.run_version == "1.1.0":
        assert step in NEW_MAY_HAVE_RUN
    # A pre-switch crash never leaves a step in flight behind.
    if step in PRE_SWITCH:
        assert rec.state.inflight is None


def test_recovery_without_the_target_installed_goes_back() -> None:
    rec = plan_recovery(at_step(Step.PROBATION), {"1.0.0"})
    assert (rec.action, rec.run_version, rec.state.inflight) == (Action.ABANDON, "1.0.0", None)


def test_state_from_disk_takes_the_newest_two() -> None:
    state = state_from_disk("storagenode", ["1.0.0", "1.10.0", "1.9.0", "junk", "2.0.0-rc.1"])
    assert (state.current, state.previous) == ("2.0.0-rc.1", "1.10.0")
    assert state_from_disk("storagenode", []).current is None


# -- probation -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ex:
    number: int = 1
    code: int | None = 1
    reason: str = "crash"
    detail: str = "exited with code 1"
    output: tuple[str, ...] = ()
    generation: int = 2


RULES = Rules(probation=60.0, start_timeout=300.0)


def obs(**kw: object) -> Observation:
    base = dict(
        now=100.0,
        switched_at=0.0,
        state="running",
        healthy_since=10.0,
        pulse_ok=True,
        exits=(),
        old_was_healthy=True,
        last_ok=100.0,
    )
    base.update(kw)
    return Observation(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "verdict"),
    [
        ({}, Verdict.PASS),
        ({"last_ok": 69.9}, Verdict.WAIT),  # healthy 59.9 s
        ({"last_ok": 70.0}, Verdict.PASS),
        # the last passing pulse came before the period ended (a hang the probe's
        # timeout has not shown yet): not a pass, however long ago the start was
        ({"now": 500.0, "last_ok": 40.0}, Verdict.WAIT),
        ({"last_ok": None}, Verdict.WAIT),
        ({"healthy_since": None, "state": "starting"}, Verdict.WAIT),
        ({"pulse_ok": False}, Verdict.WAIT),  # one failed probe: not yet proof either way
        ({"state": "stopping"}, Verdict.WAIT),
        # healthy_since before the switch (stale) counts from the switch
        ({"healthy_since": -50.0, "switched_at": 50.0}, Verdict.WAIT),
        ({"healthy_since": None, "state": "starting", "now": 300.0}, Verdict.FAIL),
        ({"exits": (Ex(),)}, Verdict.FAIL),
        ({"exits": (Ex(reason="hung"),)}, Verdict.FAIL),
        ({"exits": (Ex(reason="not-set-up", code=78),)}, Verdict.FAIL),
        ({"exits": (Ex(reason="not-set-up", code=78),), "old_was_healthy": False},
         Verdict.KEEP_UNPROVEN),
    ],
)  # fmt: skip
def test_probation_verdicts(kw: dict, verdict: Verdict) -> None:
    assert judge(obs(**kw), RULES, "1.1.0").verdict is verdict


def test_out_of_space_failure_is_transient() -> None:
    full = Ex(code=70, output=('{"msg": "migration 5 failed: database or disk is full"}',))
    j = judge(obs(exits=(full,)), RULES, "1.1.0")
    assert (j.verdict, j.kind, j.transient) == (Verdict.FAIL, "out_of_space", True)
    j = judge(obs(exits=(Ex(),)), RULES, "1.1.0")
    assert (j.kind, j.transient) == ("update_failed", False)
    assert "exited" in j.message


def test_a_hold_during_probation_blames_no_release() -> None:
    # Decision 070: the keeper stopped the node because its storage went away.
    j = judge(obs(exits=(Ex(reason="held", code=0, detail="held"),)), RULES, "1.1.0")
    assert (j.verdict, j.kind, j.transient) == (Verdict.FAIL, "node_held", True)
    assert "held the node stopped during the probation of 1.1.0" in j.message


@pytest.mark.parametrize(
    "line",
    [
        "OSError: [Errno 28] No space left on device",
        "sqlite3.OperationalError: database or disk is full",
        "There is not enough space on the disk",
        "Disk quota exceeded",
    ],
)
def test_out_of_space_markers(line: str) -> None:
    assert is_out_of_space(["ok", line])
    assert not is_out_of_space(["ok", "RuntimeError: fixture: crash at start"])


@pytest.mark.parametrize(
    ("before", "seen", "has_previous", "expected"),
    [
        (3, 3, True, AfterFailure.ROLLBACK),
        (3, 4, True, AfterFailure.HOLD),
        (3, None, True, AfterFailure.ROLLBACK),  # never answered: the old one will tell
        (None, 4, True, AfterFailure.ROLLBACK),
        (None, None, True, AfterFailure.ROLLBACK),
        (3, 2, True, AfterFailure.ROLLBACK),
        (3, 3, False, AfterFailure.HOLD),  # first install: nothing to go back to
        (None, None, False, AfterFailure.HOLD),
    ],
)
def test_after_failure(before: int | None, seen: int | None, has_previous: bool, expected) -> None:
    assert after_failure(before, seen, has_previous) is expected
    assert schema_rose(before, seen) == (before is not None and seen is not None and seen > before)


def test_time_limit_is_the_start_timeout_until_the_node_answers() -> None:
    """The only verdict that comes from time alone is the start timeout; once the node
    answered, every verdict waits for a change the supervisor signals."""
    rules = Rules(probation=60, start_timeout=300)
    never = Observation(
        now=110, switched_at=100, state="starting", healthy_since=None, pulse_ok=None,
        exits=[], old_was_healthy=True,
    )  # fmt: skip
    assert time_limit(never, rules) == 400
    assert judge(replace(never, now=399.9), rules, "1.1.0").verdict is Verdict.WAIT
    assert judge(replace(never, now=400), rules, "1.1.0").verdict is Verdict.FAIL
    answered = replace(never, state="running", healthy_since=105, pulse_ok=True, last_ok=110)
    assert time_limit(answered, rules) is None


def test_exits_of_counts_only_the_new_command() -> None:
    old_hang = Ex(number=1, reason="hung", generation=1)  # the old run, killed meanwhile
    switched = Ex(number=2, reason="switched", generation=1)
    crash = Ex(number=3, generation=2)
    later = Ex(number=4, generation=3)
    assert exits_of([old_hang, switched, crash, later], 2) == [crash, later]
    assert exits_of([old_hang, switched], 2) == []


def test_old_refuses_database() -> None:
    assert old_refuses_database(65, 65)
    assert not old_refuses_database(1, 65)
    assert not old_refuses_database(None, 65)


def test_the_step_table_covers_every_step_and_recovery_reads_it() -> None:
    """One row per step; the steps recovery abandons are exactly the pre-switch ones;
    the module docstring renders every row."""
    assert list(STEPS) == list(Step)
    assert {s for s, r in STEPS.items() if r.after_crash is Action.ABANDON} == PRE_SWITCH
    doc = steps_module.__doc__ or ""
    for step, rule in STEPS.items():
        assert f"    {step.value}\n" in doc
        assert rule.after_crash.value in doc


# -- pre-switch failures -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "remember", "kind"),
    [
        (DownloadFailed("x"), False, "download_failed"),
        (VerificationFailed("x", expected=1, actual=2), False, "verification_failed"),
        (OutOfSpace("x", path=Path("/")), False, "out_of_space"),
        (ReadOnlyFileSystem("x", path=Path("/")), False, "update_failed"),
        (StorageError("x", path=Path("/")), False, "update_failed"),
        (InvalidArtifact("x"), True, "update_failed"),
        (PreflightFailed("x"), True, "update_failed"),
    ],
)
def test_pre_switch_failures(exc, remember: bool, kind: str) -> None:
    assert exc.marks_release_failed is remember
    assert exc.report_kind == kind


# -- retention --------------------------------------------------------------------------------


def test_versions_to_delete_keeps_current_and_previous() -> None:
    names = ["1.0.0", "1.1.0", "1.2.0", "1.10.0", "lost+found", "1.0.0.tmp-abc", "1.0.0.old-x"]
    assert versions_to_delete(names, {"1.10.0", "1.2.0"}) == ["1.0.0", "1.1.0"]
    assert versions_to_delete(names, set()) == ["1.0.0", "1.1.0", "1.2.0", "1.10.0"]
    assert versions_to_delete([], {"1.0.0"}) == []


def test_leftovers_and_downloads() -> None:
    assert is_leftover("1.0.0.tmp-abc") and is_leftover("1.0.0.old-abc")
    assert not is_leftover("1.0.0")
    names = ["storagenode-1.1.0-linux_amd64.zip.part", "storagenode-1.0.0-linux_amd64.zip"]
    assert downloads_to_delete(names, ["storagenode-1.1.0-linux_amd64.zip"]) == [names[1]]
    assert downloads_to_delete(names, []) == sorted(names)


# -- cycle -------------------------------------------------------------------------------------


def test_first_check_delay() -> None:
    settings = CycleSettings(server="http://x", timing=CheckTiming(interval=900))
    assert first_check_delay(settings, installed=False, u=0.5) == 0.0
    assert first_check_delay(settings, installed=True, u=0.5) == 450.0
    now = replace(settings, first_check_now=True)
    assert first_check_delay(now, installed=True, u=0.5) == 0.0


@dataclass(frozen=True)
class View:
    state: str
    recent_exits: tuple[Ex, ...] = ()


def test_needs_setup_includes_the_supervisors_rechecks() -> None:
    not_set_up = Ex(reason="not-set-up", code=78)
    assert needs_setup(View("needs-setup"))
    assert needs_setup(View("starting", (Ex(), not_set_up)))
    assert not needs_setup(View("starting", (not_set_up, Ex())))
    assert not needs_setup(View("running", (not_set_up,)))
    assert not needs_setup(View("starting"))


def test_heartbeat_on_version_change_or_hourly() -> None:
    assert heartbeat_due(None, "1.0.0", 0.0)
    assert not heartbeat_due(("1.0.0", 0.0), "1.0.0", 10.0)
    assert heartbeat_due(("1.0.0", 0.0), "1.0.1", 10.0)
    assert heartbeat_due(("1.0.0", 0.0), "1.0.0", HEARTBEAT_SECONDS)


def test_without_rollout_leaves_only_the_minimum() -> None:
    doc = {
        "processes": {
            "storagenode": {
                "minimum": {"version": "1.0.0", "url": "http://x/a"},
                "suggested": {"version": "1.1.0", "url": "http://x/b"},
                "rollout": {"seed": "ab" * 32, "cursor": "ff" * 32},
            }
        }
    }
    stripped = without_rollout(parse_announcement(json.dumps(doc)), "storagenode")
    entry = stripped.processes["storagenode"]
    assert not entry.rollout.active and entry.minimum.version == "1.0.0"
    assert without_rollout(stripped, "other") == stripped


# -- crash hook --------------------------------------------------------------------------------


def test_crash_hook_is_inert_unless_named() -> None:
    hook = CrashHook("")
    for step in Step:
        hook.before(step)
        hook.after(step)
    other = CrashHook("commit")
    other.after(Step.DOWNLOAD)
    other.before(Step.COMMIT)  # "commit" is after the journal write, not before


# -- status table --------------------------------------------------------------------------


def test_status_rows_flag_a_hold_first() -> None:
    update = {
        "current": "1.1.0",
        "previous": "1.0.0",
        "held": {"version": "1.1.0", "message": "migration ran"},
        "step": None,
        "target": None,
        "failed": ["1.1.0"],
        "last_outcome": {"outcome": "held", "message": "HELD on storagenode 1.1.0"},
        "next_check_in": 61.0,
    }
    rows = dict(update_rows(update))
    assert next(iter(rows)) == "UPDATE HELD"
    assert rows["UPDATE HELD"] == "on 1.1.0: migration ran"
    assert rows["installed"] == "1.1.0 (previous 1.0.0)"
    assert rows["failed versions"] == "1.1.0"
    assert rows["next check"] == "in 00:01:01"
    assert update_rows(None) == []
    idle = {**update, "held": None, "failed": [], "last_outcome": None, "next_check_in": None}
    idle.update(current=None, previous=None, step="download", target="1.0.0")
    assert update_rows(idle) == [
        ("installed", "nothing installed"),
        ("updating", "to 1.0.0: download"),
    ]
