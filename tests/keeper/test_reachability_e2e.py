"""End to end (decision 082): a keeper process with ``[update]`` runs the reference node
(installed from a release, as in the field); once the node is healthy the keeper asks the
control plane to dial it back, and the control plane reaches the node's TCP port and its
QUIC responder on UDP. The result is in the keeper's /status, its /metrics and the text
of `nodekeeper status`."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.updater.lab import Lab

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lab]:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    lab = Lab(tmp_path)
    try:
        yield lab
    finally:
        lab.close()


def test_a_keeper_has_its_node_dialled_back_once_it_is_healthy(lab: Lab) -> None:
    lab.publish("1.0.0")
    address = f"127.0.0.1:{lab.node.port}"
    lab.start_keeper(reachability={"address": address})
    lab.wait_running("1.0.0", timeout=60)
    reach = lab.wait(
        lambda: ((lab.status() or {}).get("reachability") or {}).get("last"),
        30,
        "the dial-back's result in /status",
    )
    assert reach["tcp"] == "reachable" and reach["udp"] == "reachable", reach
    assert reach["address"] == address
    assert "Version Negotiation" in reach["detail"]

    url = f"http://127.0.0.1:{lab.status_port}"
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as answer:
        metrics = answer.read().decode()
    assert 'nodekeeper_reachability_udp{status="reachable"} 1.0' in metrics
    shown = subprocess.run(
        [sys.executable, "-m", "nodekeeper", "status", "--url", url],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "80"},
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert "from outside    TCP reachable, UDP reachable (checked " in shown.stdout, shown.stdout
