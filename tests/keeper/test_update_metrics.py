"""The keeper's /metrics gains the update side (issue 14): last check, last result,
installed version, failures; read from the same status as /status, scraped from a real
keeper that installed its node from a real control plane."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from nodekeeper.keeper.metrics import OUTCOMES, update_metrics
from tests.updater.lab import Lab

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lab]:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    made = Lab(tmp_path)
    try:
        yield made
    finally:
        made.close()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


@pytest.mark.e2e
def test_a_keeper_that_installed_its_node_says_so_in_its_metrics(lab: Lab) -> None:
    lab.publish("1.0.0")
    lab.start_keeper(update={"interval_seconds": 3600.0, "jitter": 0.0})
    lab.wait_running("1.0.0", timeout=60)
    lab.wait(lambda: ((lab.status() or {}).get("update") or {}).get("last_outcome"), 30)
    url = f"http://127.0.0.1:{lab.status_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as answer:
        seen = samples(answer.read().decode())
    status = lab.status() or {}
    assert seen[("nodekeeper_update_installed_info", (("previous", ""), ("version", "1.0.0")))] == 1
    assert seen[("nodekeeper_update_last_result", (("outcome", "committed"),))] == 1
    assert seen[("nodekeeper_update_last_result", (("outcome", "rolled-back"),))] == 0
    assert seen[("nodekeeper_update_last_check_success", ())] == 1
    assert seen[("nodekeeper_update_last_check_timestamp_seconds", ())] == pytest.approx(
        status["update"]["last_check"]["at"]
    )
    assert seen[("nodekeeper_update_checks_total", ())] >= 1
    assert seen[("nodekeeper_update_failed_versions", ())] == 0
    assert seen[("nodekeeper_update_in_progress", ())] == 0


def test_a_failed_check_and_a_rollback_read_as_they_are() -> None:
    update = {
        "checks": 7, "failed_checks_in_row": 3, "current": "1.0.0", "previous": "0.9.0",
        "last_check": {"ok": False, "at": 1_800_000_000.0, "error": "refused"},
        "last_outcome": {"outcome": "rolled-back", "at": 1_799_999_000.0},
        "failed": ["1.1.0"], "held": None, "step": None,
    }  # fmt: skip
    from prometheus_client import CollectorRegistry, generate_latest

    class One:
        def collect(self):  # type: ignore[no-untyped-def]
            return update_metrics(update)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(One())  # type: ignore[arg-type]
    seen = samples(generate_latest(registry).decode())
    assert seen[("nodekeeper_update_last_check_success", ())] == 0
    assert seen[("nodekeeper_update_failed_checks_in_row", ())] == 3
    assert seen[("nodekeeper_update_checks_total", ())] == 7
    assert {o: seen[("nodekeeper_update_last_result", (("outcome", o),))] for o in OUTCOMES} == {
        "committed": 0, "rolled-back": 1, "held": 0, "failed": 0,
    }  # fmt: skip
    assert seen[("nodekeeper_update_last_result_timestamp_seconds", ())] == 1_799_999_000.0
    assert seen[("nodekeeper_update_failed_versions", ())] == 1
    key = ("nodekeeper_update_installed_info", (("previous", "0.9.0"), ("version", "1.0.0")))
    assert seen[key] == 1
    # Before any check: no timestamp series at all (not a zero that reads as 1970).
    bare = {**update, "last_check": None, "last_outcome": None}
    names = {m.name for m in update_metrics(bare)}
    assert "nodekeeper_update_last_check_timestamp_seconds" not in names
    assert "nodekeeper_update_last_result_timestamp_seconds" not in names
