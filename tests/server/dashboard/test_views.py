"""What a process shows, from status rows with and without the contract's fields (pure)."""

from __future__ import annotations

from nodekeeper.server.dashboard.views import process_view

ROW = {
    "process": "storagenode",
    "minimum": "1.0.0",
    "suggested": None,
    "target": "1.1.0",
    "percent": 12.5,
    "state": "running",
    "rate_per_day": 10.0,
    "started_at": 1.0,
    "eta_complete": None,
    "versions": ["1.0.0", "1.1.0"],
    "reported": {
        "1.1.0": {"nodes": 1, "failures": 2, "failures_by_kind": {"hang": 2}},
        "1.0.0": {"nodes": 3, "failures": 0, "failures_by_kind": {}},
        "9.9.9-odd": {"nodes": 1, "failures": 0, "failures_by_kind": {}},
    },
}
ALL = {"pause", "resume", "set", "abort"}


def test_a_row_without_the_contract_fields_shows_versions_and_buttons():
    row = {k: v for k, v in ROW.items() if k != "state"}  # before the auto-pause work
    view = process_view(row, None, {"pause", "resume", "set"})
    assert view.state == "none" and view.actions == []
    view = process_view(ROW, None, {"pause", "resume", "set"})
    assert view.actions == ["pause", "set"]  # no abort without the handler
    assert [(v.version, v.nodes, v.published, v.roles) for v in view.versions] == [
        ("9.9.9-odd", 1, False, []),
        ("1.1.0", 1, True, ["rolling out"]),
        ("1.0.0", 3, True, ["minimum"]),
    ]
    assert view.versions[1].share == 0.2 and view.versions[1].by_kind == [("hang", 2)]
    assert (view.pause, view.plan, view.health) == (None, None, None)
    assert process_view({**ROW, "state": "aborted"}, None, ALL).actions == []
    assert process_view({**ROW, "state": "paused"}, None, ALL).actions == [
        "resume", "set", "abort",
    ]  # fmt: skip


def test_the_contract_fields_in_full():
    row = {
        **ROW,
        "state": "paused",
        "pause": {
            "by": "auto",
            "at": 100.0,
            "why": "worse.",
            "numbers": {
                "candidate": "1.1.0",
                "updated": 40,
                "failed": 7,
                "rate": 0.175,
                "baseline": "1.0.0",
                "baseline_rate": 0.01,
                "p_value": 0.00041,
            },
            "reports": [{"node_id": "ab", "kind": "hang", "at": 99.0, "message": "m"}],
        },
        "plan": {
            "stages": [1, 5, 25, 100],
            "soak_seconds": 5400.0,
            "stage": 1,
            "stage_since": 50.0,
            "next_stage_at": None,
        },
        "health": {"action": "pause", "why": "worse.", "updated": 40, "failed": 7},
    }
    view = process_view(row, None, ALL)
    assert view.pause.numbers == (
        "1.1.0: 7 of 40 updated nodes failed (17.5%); 1.0.0: 1.0%; p = 0.00041."
    )
    assert view.pause.by == "auto" and view.pause.reports[0]["kind"] == "hang"
    assert view.plan.stages == [("1 %", "done"), ("5 %", "current"), ("25 %", ""), ("100 %", "")]
    assert view.plan.soak == "1.5 h" and view.plan.next_stage_at is None
    assert view.health == "pause, 7 of 40 updated nodes failed. worse."


def test_odd_contract_values_show_less_and_never_fail():
    row = {
        **ROW,
        "pause": {"by": "operator", "at": None, "why": None, "numbers": None, "reports": [1]},
        "plan": {"stages": [1, "x"], "soak_seconds": None, "stage": None},
        "health": {"action": "continue"},
    }
    view = process_view(row, None, ALL)
    assert (view.pause.at, view.pause.why, view.pause.numbers, view.pause.reports) == (
        None, "", None, [],
    )  # fmt: skip
    assert view.plan.stages == [("1 %", ""), ("? %", "")] and view.plan.soak == "?"
    assert view.health == "continue."
    partial = {**row, "pause": {"numbers": {"p_value": None}}, "plan": "?", "health": []}
    view = process_view(partial, None, ALL)
    assert view.pause.numbers == "?: ? of ? updated nodes failed (?); ?: ?; p = ?."
    assert (view.plan, view.health) == (None, None)


def test_the_target_is_named_by_what_became_of_it():
    for state, role in (
        ("running", "rolling out"),
        ("complete", "rolled out"),
        ("aborted", "aborted"),
    ):
        view = process_view({**ROW, "state": state}, None, ALL)
        assert view.versions[1].roles == [role]


def test_audit_details_in_one_short_line():
    from nodekeeper.server.dashboard.views import detail_text

    assert detail_text(
        {
            "process": "storagenode",
            "artifacts": {"linux_amd64": {"sha256": "ab" * 32, "size": 1}},
            "numbers": {"failed": 7, "rate": 0.175},
            "reports": [{"kind": "hang"}, {"kind": "hang"}],
            "stages": [1, 5, 100],
        }
    ) == (
        "artifacts=linux_amd64, numbers={failed=7 rate=0.175}, reports=[2 entries], stages=1,5,100"
    )
