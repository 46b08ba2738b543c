"""A control plane with a history, for the dashboard tests: two processes, a rollout
that was started three days ago, paused, resumed and set by hand, and signed reports
from a dozen nodes (one of them with markup in its message).

Time is a settable clock in the server's settings, so three days pass in no time and
the page (and its screenshots) come out the same on every run.
"""

from __future__ import annotations

import hashlib
import re
import time

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from nodekeeper.server.auth import AdminToken
from nodekeeper.server.settings import ServerSettings
from nodekeeper.version.nodeid import format_node_id, node_id_from_public_key
from nodekeeper.version.reports import Report, encode_report, new_report_id, sign_report

TOKEN = "dashboard-test-token-0123456789"
DAY = 86_400.0
NOW = 1_796_040_000.0  # 2026-12-01 11:20 UTC
EVIL = '<script>alert("owned")</script> download broke'
SHA = "ab" * 32


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def settings(tmp_path, clock: Clock, db_url: str | None = None, **kw) -> ServerSettings:
    return ServerSettings(
        db_url=db_url or f"sqlite:///{tmp_path / 'cp.db'}",
        data_dir=tmp_path / "cp",
        public_url="http://127.0.0.1:7780",
        admin_token=AdminToken(TOKEN, "test"),
        clock=clock,
        ramp_tick=0,
        **kw,
    )


def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def _ok(response: httpx.Response) -> dict:
    assert response.status_code < 300, response.text
    return response.json()


def publish(client: httpx.Client, process: str, version: str) -> None:
    _ok(
        client.post(
            "/v1/admin/releases",
            headers=admin_headers(),
            json={
                "process": process,
                "version": version,
                "artifacts": [
                    {
                        "platform": "linux_amd64",
                        "url": f"https://cdn.example.net/{process}_{version}.zip",
                        "sha256": SHA,
                        "size": 1000,
                    }
                ],
            },
        )
    )


def rollout(client: httpx.Client, action: str, process: str = "storagenode", **body) -> dict:
    path = f"/v1/admin/processes/{process}/rollout"
    if action == "start":
        return _ok(client.post(path, headers=admin_headers(), json=body))
    if action == "set":
        return _ok(client.put(path + "/percent", headers=admin_headers(), json=body))
    return _ok(client.post(f"{path}/{action}", headers=admin_headers()))


class Node:
    def __init__(self, number: int) -> None:
        # The same keys every run: the node IDs on the page (and its screenshots) repeat.
        self.key = Ed25519PrivateKey.from_private_bytes(
            hashlib.sha256(f"dashboard node {number}".encode()).digest()
        )
        raw = self.key.public_key().public_bytes_raw()
        self.node_id = format_node_id(node_id_from_public_key(raw))

    def send(self, client: httpx.Client, at: float, version: str, kind: str, **fields) -> None:
        report = Report(
            report_id=new_report_id(),
            node_id=self.node_id,
            process=fields.pop("process", "storagenode"),
            version=version,
            kind=kind,
            message=fields.pop("message", kind.replace("_", " ")),
            at=at,
            **fields,
        )
        body = encode_report(report)
        response = client.post("/v1/reports", content=body, headers=sign_report(body, self.key))
        assert response.status_code == 202, response.text


def populate(client: httpx.Client, clock: Clock) -> None:
    """The history described at the top, ending at ``NOW`` with the ramp at 60 %."""
    clock.now = NOW - 4 * DAY
    publish(client, "storagenode", "1.0.0")  # the first release: the minimum
    publish(client, "storagenode-updater", "1.0.0")
    clock.now = NOW - 3.5 * DAY
    publish(client, "storagenode", "1.1.0")
    clock.now = NOW - 3 * DAY
    rollout(client, "start", version="1.1.0", rate_per_day=20)
    clock.now = NOW - 2 * DAY  # 20 %
    rollout(client, "pause")
    clock.now = NOW - 1.5 * DAY
    rollout(client, "resume")
    clock.now = NOW - 1 * DAY  # 30 %, then by hand to 40 % and on at 20 %/day
    rollout(client, "set", percent=40)
    clock.now = NOW - 600
    nodes = [Node(i) for i in range(12)]
    for i, node in enumerate(nodes[:7]):
        node.send(client, clock.now + i, "1.0.0", "heartbeat")
    for i, node in enumerate(nodes[7:10]):
        node.send(client, clock.now + 10 + i, "1.1.0", "update_succeeded", target_version="1.1.0")
    nodes[10].send(
        client, clock.now + 20, "1.0.0", "update_failed", target_version="1.1.0", message=EVIL
    )
    nodes[11].send(
        client, clock.now + 30, "1.0.0", "rolled_back", target_version="1.1.0",
        message="1.1.0 exited 3 times within the probation; back on 1.0.0",
    )  # fmt: skip
    nodes[0].send(client, clock.now + 40, "1.0.0", "heartbeat", process="storagenode-updater")
    clock.now = NOW


def login(client: httpx.Client, token: str = TOKEN) -> httpx.Response:
    """Log in through the form, as a browser does; returns the answer to the POST."""
    page = client.get("/dashboard/login")
    return client.post(
        "/dashboard/login",
        data={"csrf": hidden(page.text, "csrf"), "token": token},
        follow_redirects=False,
    )


def hidden(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, f"no hidden field {name!r} in the page"
    return found.group(1)


def wait_until(condition, timeout: float = 10.0, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)
