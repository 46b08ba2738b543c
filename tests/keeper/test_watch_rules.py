"""The storage watch's rules (keeper.watch_rules, pure) and the alerts' review
(keeper.alerting.review, pure): every case, no I/O."""

from __future__ import annotations

from email.utils import formatdate
from pathlib import Path

import pytest

from nodekeeper.keeper.alerting import (
    OFFLINE_ALERT_SECONDS,
    REASON_KINDS,
    UNREACHABLE_ALERT_SECONDS,
    alert_of,
    cleared,
    review,
)
from nodekeeper.keeper.watch_rules import (
    CLOCK_TOLERANCE_SECONDS,
    VERIFICATION_FILE,
    StorageLook,
    clock_offset,
    clock_problem,
    disk_problem,
    identity_problem,
    marker_matches,
    marker_owner,
    storage_problem,
)

P = Path("/mnt/node")
ID = "1Nodexyz"
RAW = bytes(range(32))


# -- storage ---------------------------------------------------------------------------


def test_storage_with_this_nodes_marker_is_fine() -> None:
    assert storage_problem(StorageLook(P, "ok", marker=f"{ID}\n".encode()), ID) is None
    assert storage_problem(StorageLook(P, "ok", marker=RAW), ID, RAW) is None  # Storj's bytes


@pytest.mark.parametrize(
    ("look", "says"),
    [
        (StorageLook(P, "missing"), f"the storage directory {P} does not exist"),
        (StorageLook(P, "not-dir"), f"the storage path {P} is not a directory"),
        (StorageLook(P, "unreadable", "Input/output error"), "cannot be read (Input/output"),
        (StorageLook(P, "timeout", "10 s"), "did not answer within 10 s"),
        (StorageLook(P, "ok", marker_error="Permission denied"), "cannot be read (Permission"),
        (StorageLook(P, "ok"), f"has no {VERIFICATION_FILE} file"),
        (
            StorageLook(P, "ok", marker=b"1Other\n"),
            f"belongs to node 1Other, not to this node {ID}",
        ),
        (StorageLook(P, "ok", marker=b""), "belongs to node (an empty file)"),
    ],
)
def test_every_storage_problem_holds_with_its_words_and_fix(look: StorageLook, says: str) -> None:
    problem = storage_problem(look, ID)
    assert problem is not None
    assert problem.kind == "storage_missing" and problem.reason == "storage-missing"
    assert problem.severity == "critical"
    assert says in problem.message
    assert "stopped so that it does not fail audits" in problem.message
    assert f"as soon as {P} is back with its {VERIFICATION_FILE}" in problem.fix


def test_unknown_identity_accepts_any_marker_but_an_empty_one() -> None:
    assert storage_problem(StorageLook(P, "ok", marker=b"1Whoever\n"), None) is None
    assert storage_problem(StorageLook(P, "ok", marker=b"\n"), None) is not None


def test_marker_owner_and_matching() -> None:
    assert marker_owner(b" 1Abc \n") == "1Abc"
    assert marker_owner(b"\xff\x00") == "ff00"  # raw bytes shown in hex
    assert marker_owner(b"a\x01b") == "610162"  # not printable: hex
    assert marker_matches(f"{ID}\n".encode(), ID, None)
    assert marker_matches(RAW, ID, RAW)
    assert not marker_matches(RAW, ID, bytes(32))
    assert not marker_matches(b"1Other", ID, RAW)


# -- disk ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("free", "total", "problem"),
    [
        (5, 100, False),  # exactly 5 %: not under
        (4, 100, True),
        (0, 100, True),
        (100, 100, False),
        (None, 100, False),  # unknown says nothing
        (4, None, False),
        (0, 0, False),  # a file system that reports no size
    ],
)
def test_disk_nearly_full_under_five_percent(
    free: int | None, total: int | None, problem: bool
) -> None:
    found = disk_problem(free, total, P)
    assert (found is not None) is problem
    if found is not None:
        assert found.kind == "disk_full"
        assert f"the disk holding {P} has" in found.message and "under 5 %" in found.message
        assert "allocation" in found.fix


def test_disk_message_sizes() -> None:
    found = disk_problem(40_000_000_000, 1_000_000_000_000, P)
    assert found is not None
    assert "40.0 GB free of 1.0 TB (4.0 %" in found.message


# -- clock -----------------------------------------------------------------------------


def test_clock_offset_from_a_date_header() -> None:
    now = 1_700_000_000.0
    assert clock_offset(formatdate(now - 30, usegmt=True), now) == 30.0
    assert clock_offset(formatdate(now + 3600, usegmt=True), now) == -3600.0
    assert clock_offset(None, now) is None
    assert clock_offset("", now) is None
    assert clock_offset("not a date", now) is None
    assert clock_offset("Tue, 14 Nov 2023 22:13:20 -0000", now) is None  # "zone unknown"


@pytest.mark.parametrize(
    ("offset", "problem", "words"),
    [
        (None, False, ""),
        (0.0, False, ""),
        (CLOCK_TOLERANCE_SECONDS, False, ""),
        (-CLOCK_TOLERANCE_SECONDS, False, ""),
        (CLOCK_TOLERANCE_SECONDS + 1, True, "10 minutes ahead of"),
        (-1800.0, True, "30 minutes behind"),
        (7200.0, True, "2.0 hours ahead of"),
        (-3 * 86400.0, True, "3 days behind"),
    ],
)
def test_clock_far_off(offset: float | None, problem: bool, words: str) -> None:
    found = clock_problem(offset, "cp.example")
    assert (found is not None) is problem
    if found is not None:
        assert found.kind == "clock_off" and found.reason == "clock-off"
        assert words in found.message and "(cp.example)" in found.message
        assert "time synchronisation" in found.fix


# -- identity --------------------------------------------------------------------------


def test_identity_problems() -> None:
    key = Path("/etc/node/identity.key")
    assert identity_problem("ok", key) is None
    assert identity_problem("not-set-up", key) is None
    missing = identity_problem("missing", key)
    assert missing is not None and missing.kind == "identity_missing"
    assert f"{key} is missing" in missing.message and "backup" in missing.fix
    unreadable = identity_problem("unreadable", key, "Permission denied")
    assert unreadable is not None and "cannot be read (Permission denied)" in unreadable.message


# -- alerts: which reasons raise, the review of the status -------------------------------


def test_reasons_map_to_known_kinds_and_alerts_carry_title_and_fix() -> None:
    from nodekeeper.alerts import KINDS

    assert set(REASON_KINDS.values()) <= set(KINDS)
    alert = alert_of("crash_loop", "node is in a crash loop", None, "1Node")
    assert (alert.title, alert.severity, alert.node_id) == (
        "Node is crash-looping",
        "error",
        "1Node",
    )
    assert "node.log" in alert.fix  # the default fix
    firewall = alert_of("firewall_blocked", "blocked", ["allow it", "then check"])
    assert firewall.fix == "allow it then check"  # the firewall's list of steps


RUNNING = {"state": "running", "crash_loop": False, "hold": None}


@pytest.mark.parametrize(
    ("kind", "status", "over"),
    [
        ("crash_loop", RUNNING, True),
        ("crash_loop", {"state": "crash-loop", "crash_loop": True}, False),
        ("crash_loop", {"state": "starting", "crash_loop": True}, False),
        ("node_offline", RUNNING, True),
        ("node_offline", {"state": "stopped"}, False),
        ("firewall_blocked", {"firewall": {"enabled": True, "last": {"status": "allowed"}}}, True),
        ("firewall_blocked", {"firewall": {"enabled": True, "last": {"status": "unknown"}}}, False),
        ("firewall_blocked", {"firewall": {"enabled": False}}, True),
        ("storage_missing", {"watch": {"problems": {}}}, True),
        ("storage_missing", {"watch": {"problems": {"storage_missing": {}}}}, False),
        ("disk_full", {"watch": {"problems": {"storage_missing": {}}}}, True),
        ("disk_full", {}, False),  # no watch: cannot judge
        ("update_failed", {"update": {"last_outcome": {"outcome": "committed"}}}, True),
        (
            "update_failed",
            {"update": {"last_outcome": {"outcome": "committed"}, "held": {"v": 1}}},
            False,
        ),
        ("update_failed", {"update": {"last_outcome": {"outcome": "rolled-back"}}}, False),
        ("update_failed", {}, False),
        ("control_plane_unreachable", {"update": {"unreachable_since": None}}, True),
        ("control_plane_unreachable", {"update": {"unreachable_since": 5.0}}, False),
        ("something_else", RUNNING, False),
    ],
)
def test_when_a_kind_has_cleared(kind: str, status: dict[str, object], over: bool) -> None:
    assert cleared(kind, status) is over


def test_review_raises_an_unreachable_control_plane_only_after_long() -> None:
    now = 100_000.0
    status = {
        **RUNNING,
        "update": {
            "server": "https://cp.example/",
            "unreachable_since": now - UNREACHABLE_ALERT_SECONDS + 1,
            "last_check": {"error": "connection refused"},
        },
    }
    assert review(status, frozenset(), None, now).raise_kinds == {}
    status["update"]["unreachable_since"] = now - UNREACHABLE_ALERT_SECONDS  # type: ignore[index]
    raised = review(status, frozenset(), None, now).raise_kinds
    assert raised["control_plane_unreachable"] == (
        "the control plane https://cp.example/ has not answered for 60 minutes: the node "
        "gets no updates (last error: connection refused)"
    )
    # Already active: not raised again (the dispatcher's debounce would drop it anyway).
    assert review(status, frozenset({"control_plane_unreachable"}), None, now).raise_kinds == {}


def test_review_node_offline_after_ten_minutes_down_for_no_other_reason() -> None:
    down = {"state": "stopped", "crash_loop": False, "hold": None, "last_exit": {"detail": "x"}}
    first = review(down, frozenset(), None, 1000.0)
    assert first.offline_since == 1000.0 and first.raise_kinds == {}
    later = review(down, frozenset(), first.offline_since, 1000.0 + OFFLINE_ALERT_SECONDS)
    assert later.raise_kinds == {
        "node_offline": "the node has not been running for 10 minutes (last exit: x)"
    }
    # Running again: offline forgotten, the active alert resolved.
    back = review(RUNNING, frozenset({"node_offline"}), later.offline_since, 2000.0)
    assert back.offline_since is None and back.resolve_kinds == {"node_offline"}
    # Down because held, crash-looping or waiting for setup: other alerts say it.
    for status in (
        {**down, "hold": {"reason": "storage"}},
        {**down, "state": "crash-loop", "crash_loop": True},
        {**down, "state": "needs-setup"},
    ):
        assert review(status, frozenset(), 0.0, 10_000.0).raise_kinds == {}
    assert review(down, frozenset({"crash_loop"}), 0.0, 10_000.0).raise_kinds == {}


def test_review_resolves_only_what_cleared() -> None:
    status = {**RUNNING, "watch": {"problems": {"disk_full": {}}}}
    active = frozenset({"crash_loop", "disk_full", "storage_missing"})
    assert review(status, active, None, 0.0).resolve_kinds == {"crash_loop", "storage_missing"}
