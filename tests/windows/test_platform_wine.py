"""nodekeeper.platform.windows with real processes, in the Windows runtime under Wine.

Each test runs one scenario of winside/scenarios.py (one `wine python.exe`, ~1-2 s) and
asserts on what it saw. Where Wine does not implement what Windows does, the test says so
and checks what can be checked: that the call was made with the right arguments and
that the status report tells the truth about it.
"""

from __future__ import annotations

from typing import Any

import pytest

from nodekeeper.platform import base
from nodekeeper.platform import windows_job as jobs
from tests.windows.wine import WineRuntime, scenario

pytestmark = pytest.mark.wine

BELOW_NORMAL = 0x4000
STILL_ACTIVE = 259

# The keeper run by hand starts the node itself ("direct"); under the launcher it starts
# it under a node shim ("shim", decision 063). Both must give the same tree, limits and
# exits, so the platform scenarios run both ways.
HOW = pytest.mark.parametrize("how", ["direct", "shim"])


def run(wine: WineRuntime, name: str, how: str) -> Any:
    return scenario(wine, name, *(["shim"] if how == "shim" else []))


def test_runtime_has_python_312_and_imports_the_whole_project(wine: WineRuntime) -> None:
    seen = scenario(wine, "runtime")
    assert seen["version"][:2] == [3, 12]
    assert seen["failed_imports"] == {}
    assert seen["platform_name"] == "windows"
    assert seen["platform"].startswith("Windows-")  # platform.platform() works (no _wmi)


@HOW
def test_kill_tree_kills_node_and_grandchild(wine: WineRuntime, how: str) -> None:
    seen = run(wine, "tree_kill", how)
    node, grandchild = seen["pids"]
    # The grandchild was started by the node with plain subprocess, and is in the job
    # (with the shim, which the tree kill leaves to report the exit).
    shim = [seen["shim"]] if how == "shim" else []
    assert seen["in_job"] == sorted([node, grandchild, *shim])
    assert seen["code"] == 1 and seen["returncode"] == 1
    assert seen["survivors"] == []
    assert seen["usage_after"] is None


def test_node_dies_with_the_keeper(wine: WineRuntime) -> None:
    """The keeper is killed with TerminateProcess (no cleanup runs in it); the job's
    kill-on-close must take the node and its grandchild within seconds."""
    seen = scenario(wine, "kill_on_close")
    assert seen["alive_before"] == [True, True]
    assert seen["survivors"] == []
    assert seen["seconds"] < 5


@pytest.fixture(scope="module", params=["direct", "shim"])
def limits_seen(wine: WineRuntime, request: pytest.FixtureRequest) -> dict[str, Any]:
    """One run of the limits scenario (a node with every limit set) for the tests below,
    each way the keeper starts a node."""
    seen: dict[str, Any] = run(wine, "limits", request.param)
    seen["how"] = request.param
    return seen


def test_affinity_and_priority_read_back_from_the_processes(limits_seen: dict[str, Any]) -> None:
    seen = limits_seen
    node, grandchild = seen["readings"]["node"], seen["readings"]["grandchild"]
    assert node["in_job"] and grandchild["in_job"]
    assert node["affinity"] == 1 and grandchild["affinity"] == 1  # cpu_cores=(0,)
    assert node["priority"] == BELOW_NORMAL
    # Windows gives the grandchild below-normal too (inherited, and the job's priority
    # class). Wine applies neither, so its grandchild runs at normal priority: only the
    # node's own class, set at CreateProcess, can be checked here.
    if not seen["wine"]:
        assert grandchild["priority"] == BELOW_NORMAL
    report = seen["report"]
    assert report["affinity"] == base.MECH_JOB_AFFINITY
    assert report["priority"] == base.MECH_PRIORITY_CLASS


def test_cores_the_machine_lacks_are_dropped_and_reported(limits_seen: dict[str, Any]) -> None:
    """Windows refuses a whole affinity mask with one bit outside the machine's, which
    would fail the start; the platform keeps the cores that exist and says so."""
    assert limits_seen["cpu_count"] < 64
    some = limits_seen["describe_some_missing"]
    assert some["affinity"] == base.MECH_JOB_AFFINITY
    assert some["notes"] == ["core affinity: cores [63] do not exist"]
    none = limits_seen["describe_all_missing"]
    assert none["affinity"] == base.MECH_NONE
    assert "none of cores [63] exist" in none["notes"][0]


def test_memory_limit_is_set_on_the_job(limits_seen: dict[str, Any]) -> None:
    """Wine accepts JOBOBJECT_EXTENDED_LIMIT_INFORMATION but neither stores nor enforces
    it: QueryInformationJobObject reads back zeros and a node allocates past the limit.
    So under Wine this checks that the call succeeded (start() raises otherwise), what
    it was given (jobs.job_limits, unit-tested in test_job_limits.py) and the report; on
    Windows the job's own read-back must match."""
    seen = limits_seen
    expected = seen["expected"]
    assert expected["job_memory"] == expected["process_memory"] == 256 << 20
    assert expected["limit_flags"] & jobs.JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
    assert seen["report"]["memory_hard"] == base.MECH_JOB_MEMORY
    if not seen["wine"]:
        assert seen["job_limit_flags"] == expected["limit_flags"]
        if seen["how"] == "shim":  # the shim's own commit is added for the shim itself
            assert 256 << 20 < seen["job_memory_limit"] < (256 + 64) << 20
        else:
            assert seen["job_memory_limit"] == 256 << 20


def test_cpu_rate_cap_is_reported_truthfully(limits_seen: dict[str, Any]) -> None:
    """JOBOBJECT_CPU_RATE_CONTROL_INFORMATION goes through ctypes. Wine 8 (like Windows
    7) rejects the information class with ERROR_INVALID_PARAMETER, so there the status
    must say the cap is not in force, and why; on Windows the job reads back the hard cap."""
    seen = limits_seen
    report, describe = seen["report"], seen["describe"]
    if seen["wine"]:
        if seen["how"] == "direct":  # the keeper's handle to a shim's job cannot set it
            assert seen["cpu_rate_error"] == 87
        assert report["cpu_rate"] == describe["cpu_rate"] == base.MECH_NONE
        assert any("error 87" in note for note in report["notes"])
    else:
        assert report["cpu_rate"] == base.MECH_JOB_CPU_RATE
        flags = jobs.JOB_OBJECT_CPU_RATE_CONTROL_ENABLE | jobs.JOB_OBJECT_CPU_RATE_CONTROL_HARD_CAP
        assert seen["job_cpu_rate"] == [flags, seen["expected"]["cpu_rate"]]


@HOW
def test_usage_reads_private_bytes_and_cpu_of_the_tree(wine: WineRuntime, how: str) -> None:
    seen = run(wine, "usage", how)
    before, after = seen["before"], seen["after"]
    assert before["memory_kind"] == "private"
    # node + grandchild, from the job's process list (not the shim, which is in it too)
    assert before["processes"] == 2
    # The node committed and touched 120 MiB before it said "ready".
    assert before["memory_bytes"] >= 120 << 20
    # ... then burnt 1.0 s of CPU (by its own clock): the tree's reading grew by that.
    assert after["cpu_seconds"] - before["cpu_seconds"] >= 0.9


def test_graceful_stop(wine: WineRuntime) -> None:
    """CTRL_BREAK_EVENT to the node's process group. Wine 8's console server implements
    only CTRL_C_EVENT, so there request_stop must report False (the supervisor then waits
    for the shutdown endpoint or kills the tree) and leave the node running; on Windows
    the node's SIGBREAK handler runs and it exits with its own code."""
    seen = scenario(wine, "graceful_stop")
    assert seen["has_console"]  # ensure_console gave the keeper one to share
    if seen["wine"]:
        assert seen["sent"] is False
        assert seen["still_running"] is True
    else:
        assert seen["sent"] is True
        assert seen["code"] == 7 and "got break" in seen["output"]
    assert seen["killed_code"] in (1, 7)


def test_a_keeper_without_a_console_gets_one_to_share(wine: WineRuntime) -> None:
    """A service has no console; GenerateConsoleCtrlEvent needs one shared with the node.
    The platform allocates one before the start (what Wine can show: the console exists
    and the node starts under it; the event itself, see test_graceful_stop)."""
    seen = scenario(wine, "no_console")
    assert seen["code"] == 0, seen["stderr"]
    # "console", had one before, has one after, "node", node pid, grandchild pid
    assert seen["words"][:4] == ["console", "False", "True", "node"], seen["words"]


@HOW
def test_output_pipes_and_exit_code(wine: WineRuntime, how: str) -> None:
    seen = run(wine, "pipes", how)
    assert seen["stdout"].strip() == "to stdout"
    assert seen["stderr"].strip() == "to stderr"
    assert seen["code"] == 3
    assert seen["usage_after_exit"] is None


def test_start_of_a_missing_program_raises_oserror(wine: WineRuntime) -> None:
    assert scenario(wine, "start_failure")["raised"] == "FileNotFoundError"


def test_start_of_a_missing_program_under_the_shim_says_why(wine: WineRuntime) -> None:
    seen = run(wine, "start_failure", "shim")
    assert seen["raised"] == "ShimError"  # an OSError, as the interface promises
    assert seen["message"].startswith("FileNotFoundError"), seen


@HOW
def test_kill_leftover_kills_only_the_recorded_tree(wine: WineRuntime, how: str) -> None:
    seen = run(wine, "kill_leftover", how)
    assert seen["identity"]["platform"] == "windows"
    # A record whose pid was recycled (other creation time) or from another OS: untouched.
    assert seen["killed_recycled"] == 0 and seen["killed_wrong_os"] == 0
    assert seen["alive_after_mismatch"] == [True, True]
    # The record itself: the job is found by name and the whole tree goes (with the
    # shim, which holds the job: a leftover shim is what a keeper found unusable).
    assert seen["killed"] == (3 if how == "shim" else 2)
    assert seen["survivors"] == []
    assert seen["killed_again"] == 0


def test_node_shim_relays_over_a_named_pipe_and_delivers_the_exit(wine: WineRuntime) -> None:
    """Decision 063 on Windows: the shim's transport (a named pipe) and relay."""
    seen = scenario(wine, "shim_relay")
    assert seen["address"].startswith("\\\\.\\pipe\\nodekeeper-shim-")
    assert seen["node_start"] > 0
    assert seen["lines"] == 500 and seen["in_order"], seen
    assert seen["code"] == 3
    assert seen["shim_left"] and seen["spec_removed"]


def test_node_shim_ends_the_node_when_its_anchor_ends(wine: WineRuntime) -> None:
    seen = scenario(wine, "shim_anchor")
    assert seen["first"] == "alive"
    # The node's start time, by which a keeper tells it from a reused pid, is Windows' own.
    assert seen["start_off"] < 1.0, seen
    assert seen["code"] != 0 and seen["left"] == [], seen  # killed: no console to signal yet


def test_a_killed_node_shim_takes_its_node_along(wine: WineRuntime) -> None:
    seen = scenario(wine, "shim_killed")
    assert seen["first"] == "alive"
    assert seen["code"] == seen["shim_gone_code"]
    assert seen["node_left"] == [], seen  # the job's kill-on-close ended it


def test_node_shim_sends_ctrl_break_on_request_and_never_kills_instead(
    wine: WineRuntime,
) -> None:
    """On Windows the node's handler runs and it exits 0. Wine cannot deliver CTRL_BREAK
    (test_graceful_stop): there the node must keep running (os.kill would have fallen
    back to TerminateProcess, exit 1) and the shim's log says the event was not sent."""
    seen = scenario(wine, "shim_graceful")
    assert seen["first"] == "alive" and seen["asked"]
    if seen["wine"]:
        assert seen["still_running"] is True and seen["last"] == ["alive"], seen
        assert "CTRL_BREAK could not be sent" in seen["shim_log"], seen["shim_log"]
    else:
        assert seen["last"] == ["stopping"] and seen["code"] == 0, seen


def test_a_second_keeper_adopts_the_node_with_its_job_and_output(wine: WineRuntime) -> None:
    """The hand-over on Windows (decision 063): keeper A detaches, keeper B adopts from
    A's record. The Job Object is the shim's: the node runs on, in its job and limits."""
    seen = scenario(wine, "shim_adopt")
    assert seen["detached"] is True
    assert seen["pid_a"] == seen["pid_b"]
    # Every line the node wrote, across both keepers, once and in order.
    assert seen["in_order"] and seen["lines"] >= 600, (
        seen["first_gap"],
        seen["drained"],
        seen["next_seq"],
    )
    refused = seen["refused"]
    assert "the record says pid" in (refused["pid reused"] or ""), refused
    assert "cannot be opened" in (refused["no job"] or ""), refused
    assert "another platform" in (refused["posix"] or ""), refused
    assert seen["readings"] == {"priority": BELOW_NORMAL, "affinity": 1, "in_job": True}
    assert seen["limits_b"] == seen["limits_a"]
    assert seen["limits_b"]["memory_hard"] == base.MECH_JOB_MEMORY
    usage = seen["usage"]
    assert usage["processes"] == 1 and usage["memory_kind"] == "private", usage
    # B's tree kill ends the node; the shim reports it and leaves, the job with it.
    assert seen["code"] == 1 and seen["left"] == [], seen
