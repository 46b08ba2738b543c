"""Two real control-plane replicas over one database (PostgreSQL, and one SQLite file)
judge the same bad rollout: it pauses once, one audit row, one alert on a real webhook
receiver on loopback, and both replicas' /metrics count one auto-pause (decision 078).
Also: `server run --alerts-config` refuses a bad file before anything starts."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from nodekeeper.version.reports import Report, new_report_id
from tests.alerts.receivers import http_receiver
from tests.support import run_main

from .controlplane import ControlPlane
from .test_api import publish
from .test_reports import Node

DEADLINE = 60.0


def _wait(check, what: str, timeout: float = DEADLINE):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _rounds(cp: ControlPlane) -> int:
    return httpx.get(cp.url + "/healthz").json()["health_checks"]


def _alerts_file(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "alerts.toml"
    path.write_text(f'[alerts]\ntimeout_seconds = 5\n\n[alerts.webhook]\nurl = "{url}/hook"\n')
    return path


def _rolled_back(node: Node) -> Report:
    return Report(
        report_id=new_report_id(),
        node_id=node.node_id,
        process="storagenode",
        version="1.0.0",
        target_version="1.1.0",
        kind="rolled_back",
        message="storagenode 1.1.0 exited with status 3 at start; rolled back to 1.0.0",
        at=time.time(),
    )


@pytest.fixture(params=["sqlite", "postgres"])
def shared_db(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    return request.getfixturevalue("pg_url")


def test_two_replicas_pause_a_bad_rollout_once_and_alert_once(tmp_path, shared_db):
    with http_receiver() as hook:
        options = [
            "--health-interval",
            "0.1",
            "--health-min-affected",
            "3",
            "--alerts-config",
            str(_alerts_file(tmp_path, hook.url)),
        ]
        a = ControlPlane(tmp_path / "a", shared_db, extra_args=options)
        b = ControlPlane(tmp_path / "b", shared_db, extra_args=options)
        with a, b:
            publish(a, tmp_path, "1.0.0")
            publish(a, tmp_path, "1.1.0")
            a.cli("rollout", "start", "storagenode", "1.1.0", "--rate", "100")
            for i in range(4):  # reports reach either replica, as behind a load balancer
                node = Node()
                sent = node.send(a if i % 2 else b, _rolled_back(node))
                assert sent.status_code == 202, sent.text

            def paused():
                rows = a.admin().get("/v1/admin/status").json()
                return rows[0] if rows[0]["state"] == "paused" else None

            row = _wait(paused, "the rollout to pause itself")
            # Both replicas judge at least twice more after the pause: neither pauses again.
            after = {cp.port: _rounds(cp) + 2 for cp in (a, b)}
            _wait(lambda: all(_rounds(cp) >= after[cp.port] for cp in (a, b)), "two rounds")
            _wait(lambda: hook.requests, "the alert on the webhook")

            audit = a.admin().get("/v1/admin/audit").json()
            pauses = [e for e in audit if e["action"] == "rollout.auto_pause"]
            assert len(pauses) == 1 and pauses[0]["remote"] == "auto"
            assert row["pause"]["by"] == "auto"
            numbers = row["pause"]["numbers"]
            # Judged when the third or the fourth report was in (min_affected 3).
            assert numbers["failed"] == numbers["updated"] in (3, 4)
            assert len(row["pause"]["reports"]) == numbers["failed"]
            assert len(hook.requests) == 1
            alert = json.loads(hook.requests[0].body)
            assert alert["kind"] == "rollout_paused" and alert["severity"] == "error"
            assert "storagenode 1.1.0 paused itself" in alert["title"]
            assert (
                f"{numbers['failed']} of {numbers['updated']} updated nodes failed"
                in (alert["message"])
            )
            assert "rollout resume storagenode" in alert["fix"]
            for cp in (a, b):
                metrics = httpx.get(cp.url + "/metrics").text
                assert 'nodekeeper_rollout_auto_pauses_total{process="storagenode"} 1.0' in (
                    metrics
                )

            # The announcement froze the cursor on both replicas (the other replica notices
            # at its next poll); paused, it does not move on its own.
            def announced(cp: ControlPlane) -> dict:
                return httpx.get(cp.url + "/").json()["processes"]["storagenode"]["rollout"]

            _wait(lambda: announced(a) == announced(b), "both replicas to serve one cursor")
            assert announced(a)["rate_per_day"] is None
            text = a.cli("rollout", "status").stdout
            assert "by the health check" in text and "rollout resume" in text


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (None, ["cannot read"]),
        ("[alerts\n", ["is not valid TOML"]),
        ("[other]\nx = 1\n", ["unknown top-level key(s) other"]),
        ("title = 'x'\n", ["unknown top-level key(s) title"]),
        ("", ["has no [alerts] table", "[alerts.webhook]"]),
        ("[alerts]\ndebounce_minutes = 5\n", ["names no channel"]),
        ('[alerts.webhook]\nurl = "ftp://x"\n', ["alerts.webhook.url", "http:// or https://"]),
        ('[alerts.webhook]\nurl = "http://h"\nsurprise = 1\n', ["alerts.webhook.surprise"]),
        (
            '[alerts]\nsecrets_file = "missing.toml"\n[alerts.webhook]\nurl = "http://h"\n',
            ["missing.toml"],
        ),
    ],
)
def test_a_bad_alerts_config_fails_the_start_with_what_is_wrong(tmp_path, content, words):
    path = tmp_path / "alerts.toml"
    if content is not None:
        path.write_text(content)
    data = tmp_path / "cp"
    argv = ["server", "run", "--listen", "127.0.0.1:0", "--data-dir", str(data)]
    result = run_main([*argv, "--alerts-config", str(path)], {"NODEKEEPER_ADMIN_TOKEN": None})
    assert result.returncode == 2, result
    assert "--alerts-config" in result.stderr and "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr, result.stderr
    assert not data.exists()  # nothing was created
