"""Signed reports from keepers: verified, rate-limited, counted per version."""

import json
import time

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from nodekeeper.version.nodeid import format_node_id, node_id_from_public_key
from nodekeeper.version.reports import (
    SIGNATURE_HEADER,
    Report,
    encode_report,
    new_report_id,
    sign_report,
)

from .controlplane import ControlPlane
from .test_api import publish


class Node:
    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.generate()
        raw = self.key.public_key().public_bytes_raw()
        self.node_id = format_node_id(node_id_from_public_key(raw))

    def report(self, kind="heartbeat", version="1.0.0", **fields) -> Report:
        return Report(
            report_id=fields.pop("report_id", new_report_id()),
            node_id=self.node_id,
            process="storagenode",
            version=version,
            kind=kind,
            message=fields.pop("message", kind),
            at=time.time(),
            **fields,
        )

    def send(self, server, report: Report, key=None, body=None) -> httpx.Response:
        body = body if body is not None else encode_report(report)
        headers = sign_report(body, key or self.key)
        return httpx.post(server.url + "/v1/reports", content=body, headers=headers)


@pytest.fixture
def server(tmp_path):
    cp = ControlPlane(tmp_path / "cp")
    cp.extra_args = []
    with cp:
        yield cp


def stored(server):
    return server.admin().get("/v1/admin/reports", params={"limit": 1000}).json()


def test_signed_report_is_stored_and_counted(server, tmp_path):
    publish(server, tmp_path, "1.0.0")
    publish(server, tmp_path, "1.1.0")
    nodes = [Node() for _ in range(3)]
    for node in nodes:
        assert node.send(server, node.report()).status_code == 202
    failure = nodes[0].report(
        "rolled_back", target_version="1.1.0", message="pulse failed", details={"exit": 1}
    )
    assert nodes[0].send(server, failure).status_code == 202
    assert (
        nodes[1].send(server, nodes[1].report("update_succeeded", version="1.1.0")).status_code
        == 202
    )
    rows = stored(server)
    assert len(rows) == 5
    assert rows[1]["kind"] == "rolled_back" and rows[1]["details"] == {"exit": 1}
    status = server.admin().get("/v1/admin/status").json()[0]["reported"]
    assert status["1.0.0"]["nodes"] == 2 and status["1.0.0"]["failures"] == 0
    assert status["1.1.0"] == {
        "nodes": 1,
        "failures": 1,
        "failures_by_kind": {"rolled_back": 1},
    }
    table = server.cli("rollout", "status").stdout
    assert "nodes report" in table and "1 failures (rolled_back 1)" in table


def test_unsigned_forged_and_tampered_reports_are_refused(server):
    node, other = Node(), Node()
    report = node.report("crash_loop")
    body = encode_report(report)
    cases = {
        "unsigned": httpx.post(server.url + "/v1/reports", content=body),
        "other key": node.send(server, report, key=other.key),
        "tampered": httpx.post(
            server.url + "/v1/reports",
            content=body.replace(b"crash_loop", b"hang"),
            headers=sign_report(body, node.key),
        ),
        "bad base64": httpx.post(
            server.url + "/v1/reports",
            content=body,
            headers={**sign_report(body, node.key), SIGNATURE_HEADER: "!!"},
        ),
    }
    for name, r in cases.items():
        assert r.status_code == 401, name
        assert "sign" in r.json()["error"], name
    assert stored(server) == []


def test_malformed_and_oversized_reports(server):
    node = Node()
    body = json.dumps({"node_id": node.node_id, "kind": "nonsense"}).encode()
    r = node.send(server, None, body=body)
    assert r.status_code == 422 and "malformed report" in r.json()["error"]
    big = b"x" * (70 * 1024)
    assert node.send(server, None, body=big).status_code == 413
    assert stored(server) == []


def test_rate_limit_and_resend(server, tmp_path):
    node = Node()
    first = node.report("hang")
    assert node.send(server, first).status_code == 202
    again = node.send(server, first)  # the answer was lost; the keeper sends it again
    assert again.status_code == 200 and again.json()["duplicate"] is True
    codes = [node.send(server, node.report()).status_code for _ in range(35)]
    assert codes.count(202) == 29  # 30 a minute, the first included
    limited = node.send(server, node.report())
    assert limited.status_code == 429 and limited.headers["retry-after"] == "60"
    # another node is not affected
    other = Node()
    assert other.send(server, other.report()).status_code == 202
    assert len(stored(server)) == 31
