"""The operator's side of decisions 078 and 079 through the real admin API and CLI:
staged plans (and the errors that say what is wrong), abort, and `rollout status` at 80
columns with a pause, its deciding reports, a plan and the health line."""

from __future__ import annotations

import json

import httpx
import pytest

from nodekeeper.server.status_view import render_status
from nodekeeper.version.schema import parse_announcement

from .test_api import publish

NOW = 1_796_000_000.0


def _start(server, **body):
    return server.admin().post(
        "/v1/admin/processes/storagenode/rollout", json={"version": "1.1.0", **body}
    )


@pytest.fixture
def two_releases(server, tmp_path):
    publish(server, tmp_path, "1.0.0")
    publish(server, tmp_path, "1.1.0")
    return server


def test_staged_start_through_the_cli(two_releases):
    server = two_releases
    out = server.cli(
        "rollout", "start", "storagenode", "1.1.0", "--stages", "1,5,25,100", "--soak", "6h"
    ).stdout
    assert "in stages 1, 5, 25, 100 %, each held 21600 s at least" in out
    row = json.loads(server.cli("rollout", "status", "--json").stdout)[0]
    assert row["percent"] == 1.0 and row["state"] == "running"
    assert row["plan"]["stages"] == [1, 5, 25, 100] and row["plan"]["soak_seconds"] == 21600
    assert row["plan"]["stage"] == 0
    assert row["plan"]["next_stage_at"] == row["plan"]["stage_since"] + 21600
    text = server.cli("rollout", "status").stdout
    assert "staged" in text and "1 → 5 → 25 → 100 %, each held 6 h at least" in text
    [audit] = [
        e for e in server.admin().get("/v1/admin/audit").json() if e["action"] == "rollout.start"
    ]
    assert audit["detail"]["stages"] == [1, 5, 25, 100]


def test_doubling_through_the_api(two_releases):
    answer = _start(two_releases, doubling=True, soak_seconds=60)
    assert answer.status_code == 201, answer.text
    assert answer.json()["plan"]["stages"] == [1, 2, 4, 8, 16, 32, 64, 100]


# One control plane for all the cases (a server start is about a second): each case is
# refused and leaves the audit log as it was, so they cannot disturb one another.
BAD_PLANS = [
    ({"stages": [1, 5, 5, 100], "soak_seconds": 60}, "strictly ascending"),
    ({"stages": [1, 5, 25], "soak_seconds": 60}, "last stage must be 100"),
    ({"stages": [1, 100], "soak_seconds": -1}, "soak time must be 0 seconds or more"),
    ({"stages": [1, 100], "soak_seconds": 6, "rate_per_day": 10}, "not both"),
    ({"doubling": True, "soak_seconds": 6, "rate_per_day": 10}, "not both"),
    ({"stages": [1, 100], "doubling": True, "soak_seconds": 6}, "stages or doubling"),
    ({"stages": [1, 100]}, "needs soak_seconds"),
    ({"soak_seconds": 60}, "goes with a staged plan"),
]


def test_bad_plans_are_refused_and_change_nothing(two_releases):
    before = two_releases.admin().get("/v1/admin/audit").json()
    for body, words in BAD_PLANS:
        answer = _start(two_releases, **body)
        assert answer.status_code == 422, body
        error = answer.json()["error"]
        assert words in error and "invalid staged plan" in error, (body, error)
    assert two_releases.admin().get("/v1/admin/audit").json() == before


BAD_CLI_PLANS = [
    (["--stages", "1,5,100"], "needs --soak"),
    (["--stages", "1,5,100", "--soak", "1h", "--rate", "5"], "not both"),
    (["--stages", "1,x,100", "--soak", "1h"], "percents separated by commas"),
    (["--doubling", "--stages", "1,100", "--soak", "1h"], "either --stages or --doubling"),
    (["--soak", "1h"], "--soak goes with a staged plan"),
    (["--doubling", "--soak", "soon"], "--soak 'soon'"),
    (["--stages", "5,1,100", "--soak", "1h"], "strictly ascending"),  # the server's check
]


def test_cli_plan_errors_say_what_is_wrong(two_releases):
    for args, words in BAD_CLI_PLANS:
        result = two_releases.cli("rollout", "start", "storagenode", "1.1.0", *args, check=False)
        assert result.returncode != 0 and words in result.stderr, (args, result.stderr)
    assert json.loads(two_releases.cli("rollout", "status", "--json").stdout)[0]["target"] is None


def test_abort_through_the_cli_and_the_api(two_releases):
    server = two_releases
    server.cli("rollout", "start", "storagenode", "1.1.0")
    server.cli("rollout", "set", "storagenode", "30")
    out = server.cli("rollout", "abort", "storagenode").stdout
    assert "storagenode 1.1.0: 0.0 % (aborted)" in out
    announced = parse_announcement(httpx.get(server.url + "/").content).processes["storagenode"]
    assert not announced.rollout.active and announced.suggested.version == "1.0.0"
    seed_form = httpx.get(server.url + "/seed").json()["processes"]["storagenode"]
    assert seed_form["rollout"]["active"] is False and seed_form["rollout"]["target_version"] == ""
    assert seed_form["suggested_version"] == "1.0.0"
    text = server.cli("rollout", "status").stdout
    assert "aborted" in text and "nodes keep what they run" in text
    audit = server.admin().get("/v1/admin/audit").json()[0]
    assert audit["action"] == "rollout.abort" and audit["remote"] == "127.0.0.1"
    assert audit["detail"]["percent_before"] == 30.0
    # Aborting again, or resuming: refused with what to do instead.
    again = server.admin().post("/v1/admin/processes/storagenode/rollout/abort")
    assert again.status_code == 409 and "start a new one" in again.json()["error"]
    row = server.admin().post("/v1/admin/processes/storagenode/rollout/resume")
    assert row.status_code == 409


def test_abort_answers_a_status_row(two_releases):
    two_releases.cli("rollout", "start", "storagenode", "1.1.0")
    row = two_releases.admin().post("/v1/admin/processes/storagenode/rollout/abort").json()
    assert (row["state"], row["percent"], row["target"]) == ("aborted", 0.0, "1.1.0")
    assert {"pause", "plan", "health"} <= set(row)


def _paused_row() -> dict:
    message = (
        "storagenode 1.120.3-rc.1 exited with status 3 within 0.4 s of its start; rolled "
        "back to 1.119.15 and remembered 1.120.3-rc.1 as failed"
    )
    return {
        "process": "storagenode",
        "minimum": "1.118.4",
        "suggested": "1.119.15",
        "target": "1.120.3-rc.1",
        "percent": 5.0,
        "state": "paused",
        "rate_per_day": None,
        "started_at": NOW - 7200,
        "eta_complete": None,
        "versions": ["1.118.4", "1.119.15", "1.120.3-rc.1"],
        "reported": {},
        "pause": {
            "by": "auto",
            "at": NOW - 600,
            "why": "1.120.3-rc.1: 7 of 40 updated nodes failed (17.5 %) against 0.8 % for "
            "1.119.15; one-sided test p = 0.00072 < 0.01 and at least 5 affected nodes: paused",
            "numbers": {
                "candidate": "1.120.3-rc.1",
                "updated": 40,
                "failed": 7,
                "rate": 0.175,
                "baseline": "1.119.15",
                "baseline_rate": 0.008,
                "p_value": 0.00072,
            },
            "reports": [
                {
                    "node_id": f"{i:02d}" * 32,
                    "kind": "rolled_back",
                    "at": NOW - 900,
                    "message": message,
                }
                for i in range(7)
            ],
        },
        "plan": {
            "stages": [1, 5, 25, 100],
            "soak_seconds": 21600.0,
            "stage": 1,
            "stage_since": NOW - 3600,
            "next_stage_at": None,
        },
        "health": {
            "action": "pause",
            "why": "1.120.3-rc.1: 7 of 40 updated nodes failed (17.5 %) ...: paused",
            "updated": 40,
            "failed": 7,
        },
    }


def test_a_paused_staged_rollout_reads_well_at_80_columns():
    text = render_status([_paused_row()], width=80)
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines), text
    joined = " ".join(line.strip() for line in lines)
    for words in (
        "1.120.3-rc.1 at 5.00 %, paused, staged",
        "by the health check at",
        "7 of 40 updated nodes failed (17.5 %)",
        "p = 0.00072",
        "node 000000000000… rolled_back",
        "and 4 more (--json)",
        "`rollout resume` / `rollout abort`",
        "1 → 5 → 25 → 100 %, each held 6 h at least",
        "stage 2 of 4 since",
    ):
        assert words in joined, (words, text)
    assert "next not before" not in joined  # paused: nothing is due


def test_an_operators_pause_and_a_running_plan_read_well():
    row = _paused_row()
    row["pause"] = {"by": "operator", "at": NOW, "why": "paused by the operator (10.0.0.7)",
                    "numbers": None, "reports": []}  # fmt: skip
    text = render_status([row], width=80)
    assert "by the operator at" in text and "deciding" not in text and "resume or" not in text
    row.update(state="running", pause=None)
    row["plan"]["next_stage_at"] = NOW + 3600
    row["health"] = {"action": "continue", "why": "fewer than 5 affected nodes: continue",
                     "updated": 3, "failed": 0}  # fmt: skip
    text = render_status([row], width=80)
    assert "next not before" in text and "fewer than 5 affected nodes" in text
    assert all(len(line) <= 80 for line in text.splitlines())
