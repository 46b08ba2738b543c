"""The health check's wiring over an SQLite file and a real PostgreSQL (decisions 078,
079): what the queries count, the pause fired once however many judges race, resume
forgiving what was seen, abort, and stages moving on."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from nodekeeper.server import ramp
from nodekeeper.server.document import build_document
from nodekeeper.server.errors import ConflictError, InvalidRequestError
from nodekeeper.server.health_check import check_rollouts
from nodekeeper.server.models import ArtifactRecord
from nodekeeper.server.rollout_counts import count_version
from nodekeeper.server.rollout_health import HealthRule
from nodekeeper.server.rollout_plan import Plan
from nodekeeper.server.status import process_status
from nodekeeper.server.store import Store, add_report
from nodekeeper.version.decision import AHEAD, WAITING_FOR_ROLLOUT, decide_update
from nodekeeper.version.nodeid import parse_node_id
from nodekeeper.version.reports import Report, new_report_id
from nodekeeper.version.schema import parse_announcement

from .test_reports import Node

ART = ArtifactRecord("linux_amd64", "ab" * 32, 1234, url="https://cdn.example/sn.zip")
RULE = HealthRule(min_affected=3)
T0 = 1_000_000.0


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'cp.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    s = Store(url)
    s.init_schema()
    yield s
    s.close()


def _fleet(store: Store, *, plan: Plan | None = None, rate: float | None = 10.0) -> None:
    """1.0.0 is the fleet's (the minimum); 1.1.0 is rolled out from T0."""
    store.publish_release("storagenode", "1.0.0", [ART], now=T0 - 100, remote="t")
    store.publish_release("storagenode", "1.1.0", [ART], now=T0 - 50, remote="t")
    store.start_rollout(
        "storagenode", "1.1.0", None if plan else rate, now=T0, remote="op", plan=plan
    )


def _send(store: Store, node: Node, kind: str, at: float, **fields) -> None:
    version = fields.pop("version", "1.0.0")
    report = Report(
        report_id=new_report_id(),
        node_id=node.node_id,
        process="storagenode",
        version=version,
        kind=kind,
        message=fields.pop("message", f"{kind} on {version}"),
        at=at,
        **fields,
    )
    add_report(store, report, received_at=at, remote="10.0.0.1", per_minute=1000)


def _updated(store: Store, node: Node, at: float) -> None:
    _send(store, node, "update_succeeded", at, version="1.1.0", target_version="1.1.0")


def _rolled_back(store: Store, node: Node, at: float) -> None:
    _send(store, node, "rolled_back", at, version="1.0.0", target_version="1.1.0")


def _audit(store: Store, action: str) -> list[dict]:
    return [e for e in store.audit_entries(1000) if e["action"] == action]


def _process(store: Store, now: float):
    return store.snapshot(now).processes["storagenode"]


# -- the counts ------------------------------------------------------------------------------


def test_counts_are_distinct_nodes_aimed_at_the_version_since_the_start(store):
    _fleet(store)
    a, b, c, d, e = (Node() for _ in range(5))
    _rolled_back(store, a, T0 + 1)
    _send(store, a, "crash_loop", T0 + 2, version="1.0.0", target_version="1.1.0")  # same node
    _updated(store, b, T0 + 3)
    _send(store, b, "hang", T0 + 4, version="1.1.0")  # after updating: aimed at 1.1.0 by version
    _send(store, c, "heartbeat", T0 + 5, version="1.1.0")  # node_versions says 1.1.0
    # Not the release's fault (decision 075): a full disk is not counted, but it tried.
    _send(store, d, "out_of_space", T0 + 6, version="1.0.0", target_version="1.1.0")
    # Before the rollout started: not in the window.
    _send(store, e, "rolled_back", T0 - 10, version="1.0.0", target_version="1.1.0")
    with store.engine.connect() as conn:
        counted = count_version(conn, "storagenode", "1.1.0", T0)
    assert (counted.counts.updated, counted.counts.failed) == (4, 2)  # a, b, c, d; a, b
    hex_ids = {parse_node_id(n.node_id).hex(): n for n in (a, b)}
    assert [r["node_id"] for r in counted.deciding] == list(hex_ids)  # one per node, oldest
    assert [r["kind"] for r in counted.deciding] == ["rolled_back", "hang"]
    # The baseline: nodes on 1.0.0 in the window (a and d are back on it: node_versions),
    # failures aimed at 1.0.0 only (a's and d's were aimed at 1.1.0).
    _send(store, e, "heartbeat", T0 + 7, version="1.0.0")
    _send(store, e, "crash_loop", T0 + 8, version="1.0.0")
    with store.engine.connect() as conn:
        base = count_version(conn, "storagenode", "1.0.0", T0)
    assert (base.counts.updated, base.counts.failed) == (3, 1)  # a, d, e; e


def test_forgiven_nodes_leave_both_counts(store):
    _fleet(store)
    old, fine, new = Node(), Node(), Node()
    _rolled_back(store, old, T0 + 1)
    _updated(store, fine, T0 + 2)
    _rolled_back(store, new, T0 + 20)
    with store.engine.connect() as conn:
        counted = count_version(conn, "storagenode", "1.1.0", T0, forgive_before=T0 + 10)
    assert (counted.counts.updated, counted.counts.failed) == (2, 1)  # fine + new; new
    assert [r["node_id"] for r in counted.deciding] == [parse_node_id(new.node_id).hex()]


# -- pausing ---------------------------------------------------------------------------------


def test_a_bad_release_pauses_once_and_says_so(store):
    _fleet(store)
    nodes = [Node() for _ in range(6)]
    for i, node in enumerate(nodes[:2]):
        _rolled_back(store, node, T0 + 10 + i)
    assert check_rollouts(store, RULE, T0 + 20) == []  # 2 < min_affected: continue
    health = _process(store, T0 + 20).rollout.health
    assert health["action"] == "continue" and "fewer than 3 affected nodes" in health["why"]
    _rolled_back(store, nodes[2], T0 + 30)
    for node in nodes[3:]:
        _updated(store, node, T0 + 31)

    [event] = check_rollouts(store, RULE, T0 + 40)
    assert event.kind == "pause" and event.version == "1.1.0"
    assert check_rollouts(store, RULE, T0 + 50) == []  # paused: not judged, not re-paused

    process = _process(store, T0 + 60)
    row = process_status(process, T0 + 60)
    assert row["state"] == "paused"
    pause = row["pause"]
    assert pause["by"] == "auto" and pause["at"] == T0 + 40
    assert pause["why"].startswith("1.1.0: 3 of 6 updated nodes failed (50.0 %)")
    # The three that rolled back run 1.0.0 again: the baseline has 3 nodes, none failed,
    # shrunk towards the prior 2 % on 50 nodes: 1 / 53.
    assert pause["numbers"]["baseline_rate"] == pytest.approx(1 / 53, abs=1e-6)
    assert pause["numbers"] | {"p_value": 0, "baseline_rate": 0.02} == {
        "candidate": "1.1.0",
        "updated": 6,
        "failed": 3,
        "rate": 0.5,
        "baseline": "1.0.0",
        "baseline_rate": 0.02,
        "p_value": 0,
    }
    assert 0 < pause["numbers"]["p_value"] < RULE.alpha
    assert [r["kind"] for r in pause["reports"]] == ["rolled_back"] * 3
    assert {"node_id", "kind", "at", "message"} == set(pause["reports"][0])
    # The cursor froze where it was when the check paused it.
    frozen = ramp.percent_at(process.rollout.ramp, T0 + 60)
    assert frozen == pytest.approx(10.0 * 40 / 86_400)
    assert ramp.percent_at(process.rollout.ramp, T0 + 10_000) == frozen
    [audit] = _audit(store, "rollout.auto_pause")
    assert audit["remote"] == "auto"
    assert audit["detail"]["numbers"]["failed"] == 3 and len(audit["detail"]["reports"]) == 3
    assert store.auto_pause_counts() == {"storagenode": 1}


def test_judges_racing_pause_once(store):
    """Eight judges (threads, each its own connection, as replicas are) on one bad
    rollout at the same instant: one UPDATE changes the row; one event, one audit row."""
    _fleet(store)
    for i in range(4):
        _rolled_back(store, Node(), T0 + i)
    judges = 8
    barrier = threading.Barrier(judges, timeout=30)

    def judge() -> list:
        barrier.wait()
        return check_rollouts(store, RULE, T0 + 100)

    with ThreadPoolExecutor(judges) as pool:
        results = [f.result(timeout=60) for f in [pool.submit(judge) for _ in range(judges)]]
    assert sorted(len(r) for r in results) == [0] * (judges - 1) + [1]
    assert len(_audit(store, "rollout.auto_pause")) == 1


def test_resume_forgives_what_was_seen_and_pauses_on_new_failures(store):
    _fleet(store)
    for i in range(3):
        _rolled_back(store, Node(), T0 + i)
    assert [e.kind for e in check_rollouts(store, RULE, T0 + 10)] == ["pause"]
    store.change_rollout(
        "storagenode",
        "rollout.resume",
        lambda state: ramp.resume(state, T0 + 20),
        now=T0 + 20,
        remote="op",
    )
    [resume] = _audit(store, "rollout.resume")
    assert resume["detail"]["was_paused_by"] == "auto"
    assert resume["detail"]["forgive_before"] == T0 + 20
    # The same numbers, judged again: not paused the instant it is resumed.
    assert check_rollouts(store, RULE, T0 + 30) == []
    row = process_status(_process(store, T0 + 30), T0 + 30)
    assert row["state"] == "running" and row["pause"] is None
    assert row["health"]["action"] == "continue" and row["health"]["failed"] == 0
    # New failures after the resume pause it again.
    for i in range(3):
        _rolled_back(store, Node(), T0 + 40 + i)
    [again] = check_rollouts(store, RULE, T0 + 50)
    assert again.kind == "pause" and again.detail["numbers"]["failed"] == 3
    assert store.auto_pause_counts() == {"storagenode": 2}


def test_an_operators_pause_is_said_to_be_the_operators(store):
    _fleet(store)
    store.change_rollout(
        "storagenode", "rollout.pause", lambda s: ramp.pause(s, T0 + 5), now=T0 + 5, remote="op"
    )
    row = process_status(_process(store, T0 + 6), T0 + 6)
    assert row["pause"] == {
        "by": "operator",
        "at": T0 + 5,
        "why": "paused by the operator (op)",
        "numbers": None,
        "reports": [],
    }
    for i in range(5):
        _rolled_back(store, Node(), T0 + 10 + i)
    assert check_rollouts(store, RULE, T0 + 20) == []  # paused: the check leaves it be
    assert _audit(store, "rollout.auto_pause") == []


# -- abort -----------------------------------------------------------------------------------


def test_abort_moves_the_cursor_to_zero_and_nodes_on_it_stay(store):
    _fleet(store, rate=None)
    store.change_rollout(
        "storagenode",
        "rollout.set",
        lambda s: ramp.set_percent(s, 100.0, T0 + 1),
        now=T0 + 1,
        remote="op",
    )
    # 1.2.0 rolled out to everyone, then aborted: some nodes already committed it.
    store.publish_release("storagenode", "1.2.0", [ART], now=T0 + 2, remote="t")
    store.start_rollout("storagenode", "1.2.0", None, now=T0 + 3, remote="op")
    store.change_rollout(
        "storagenode", "rollout.set", lambda s: ramp.set_percent(s, 40.0, T0 + 4), now=T0 + 4,
        remote="op",
    )  # fmt: skip
    before = store.generation()
    store.abort_rollout("storagenode", now=T0 + 5, remote="op")
    assert store.generation() == before + 1
    [audit] = _audit(store, "rollout.abort")
    assert audit["detail"]["percent_before"] == 40.0 and audit["detail"]["percent_after"] == 0
    process = _process(store, T0 + 6)
    row = process_status(process, T0 + 6)
    assert (row["state"], row["percent"], row["target"]) == ("aborted", 0.0, "1.2.0")
    assert row["eta_complete"] is None and row["pause"] is None
    # The announcement: no rollout, suggested back to the fleet's 1.1.0.
    doc = build_document(store.snapshot(T0 + 6), T0 + 6, "http://cp.example")
    announced = parse_announcement(json.dumps(doc).encode()).processes["storagenode"]
    assert not announced.rollout.active and announced.suggested.version == "1.1.0"
    # What the keeper decides from it (its own code): a node on 1.2.0 stays, a node on
    # 1.1.0 is up to date, nobody is sent to 1.2.0 or back.
    node = parse_node_id(Node().node_id)
    on_aborted = decide_update("1.2.0", announced, node)
    assert on_aborted.target is None and on_aborted.code == AHEAD
    assert decide_update("1.1.0", announced, node).target is None
    assert decide_update("1.0.0", announced, node).target is None  # no rollout to join
    # Aborted means aborted: no pause, resume or set; a new rollout (even of 1.2.0) may start.
    for action, change in (("rollout.resume", ramp.resume), ("rollout.pause", ramp.pause)):
        with pytest.raises(ConflictError, match="was aborted; start a new one"):
            store.change_rollout(
                "storagenode", action, lambda s, c=change: c(s, T0 + 7), now=T0 + 7, remote="op"
            )
    assert check_rollouts(store, RULE, T0 + 8) == []
    store.start_rollout("storagenode", "1.2.0", None, now=T0 + 9, remote="op")


def test_a_waiting_node_is_not_sent_anywhere_by_an_abort_of_the_first_rollout(store):
    _fleet(store, rate=None)
    store.abort_rollout("storagenode", now=T0 + 5, remote="op")
    doc = build_document(store.snapshot(T0 + 6), T0 + 6, "http://cp.example")
    announced = parse_announcement(json.dumps(doc).encode()).processes["storagenode"]
    assert announced.suggested.version == "1.0.0"  # no completed rollout: the minimum
    decision = decide_update("1.0.0", announced, parse_node_id(Node().node_id))
    assert decision.target is None and decision.code != WAITING_FOR_ROLLOUT


# -- staged plans ----------------------------------------------------------------------------


def test_a_good_release_moves_through_the_stages_once_each(store):
    _fleet(store, plan=Plan((10.0, 50.0, 100.0), 60.0))
    row = process_status(_process(store, T0), T0)
    assert (row["percent"], row["rate_per_day"]) == (10.0, None)
    assert row["plan"] == {
        "stages": [10.0, 50.0, 100.0],
        "soak_seconds": 60.0,
        "stage": 0,
        "stage_since": T0,
        "next_stage_at": T0 + 60,
    }
    for node in (Node(), Node()):
        _updated(store, node, T0 + 5)
    assert check_rollouts(store, RULE, T0 + 59) == []  # still soaking
    # Two judges at the same instant: the stage moves once.
    events = check_rollouts(store, RULE, T0 + 60) + check_rollouts(store, RULE, T0 + 60)
    assert [(e.kind, e.detail) for e in events] == [
        ("stage", {"stage_before": 0, "stage_after": 1})
    ]
    row = process_status(_process(store, T0 + 61), T0 + 61)
    assert row["percent"] == 50.0 and row["plan"]["stage"] == 1
    assert row["plan"]["next_stage_at"] == T0 + 120
    [events] = [check_rollouts(store, RULE, T0 + 121)]
    assert [e.detail["stage_after"] for e in events] == [2]
    row = process_status(_process(store, T0 + 122), T0 + 122)
    assert (row["state"], row["percent"], row["plan"]["next_stage_at"]) == ("complete", 100, None)
    audits = _audit(store, "rollout.stage")
    assert [(a["detail"]["percent_before"], a["detail"]["percent_after"]) for a in audits] == [
        (50.0, 100.0),
        (10.0, 50.0),
    ]
    assert all(a["remote"] == "auto" for a in audits)


def test_a_bad_release_in_a_staged_plan_never_leaves_its_first_stage(store):
    _fleet(store, plan=Plan((10.0, 100.0), 60.0))
    for i in range(3):
        _rolled_back(store, Node(), T0 + 1 + i)
    [event] = check_rollouts(store, RULE, T0 + 30)
    assert event.kind == "pause"
    assert check_rollouts(store, RULE, T0 + 1000) == []  # long past the soak: still paused
    row = process_status(_process(store, T0 + 1000), T0 + 1000)
    assert (row["state"], row["percent"], row["plan"]["stage"]) == ("paused", 10.0, 0)
    assert row["plan"]["next_stage_at"] is None  # paused: no stage change is due
    assert _audit(store, "rollout.stage") == []
    # Resumed: the stage soaks again from the resume.
    store.change_rollout(
        "storagenode", "rollout.resume", lambda s: ramp.resume(s, T0 + 2000), now=T0 + 2000,
        remote="op",
    )  # fmt: skip
    assert process_status(_process(store, T0 + 2001), T0 + 2001)["plan"]["stage_since"] == T0 + 2000
    assert check_rollouts(store, RULE, T0 + 2030) == []
    assert [e.kind for e in check_rollouts(store, RULE, T0 + 2060)] == ["stage"]


def test_setting_the_percent_by_hand_ends_the_plan(store):
    _fleet(store, plan=Plan((10.0, 100.0), 60.0))
    store.change_rollout(
        "storagenode", "rollout.set", lambda s: ramp.set_percent(s, 30.0, T0 + 1), now=T0 + 1,
        remote="op",
    )  # fmt: skip
    row = process_status(_process(store, T0 + 2), T0 + 2)
    assert row["plan"] is None and row["percent"] == 30.0
    [audit] = _audit(store, "rollout.set")
    assert audit["detail"]["plan_ended"] == [10.0, 100.0]


def test_a_plan_with_a_rate_is_refused_and_changes_nothing(store):
    store.publish_release("storagenode", "1.0.0", [ART], now=T0, remote="t")
    store.publish_release("storagenode", "1.1.0", [ART], now=T0, remote="t")
    generation = store.generation()
    with pytest.raises(InvalidRequestError, match="not both"):
        store.start_rollout(
            "storagenode", "1.1.0", 10.0, now=T0, remote="op", plan=Plan((1.0, 100.0), 6.0)
        )
    assert store.generation() == generation
    assert _process(store, T0).rollout is None
