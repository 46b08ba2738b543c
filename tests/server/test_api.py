"""The control plane as nodes and operators see it: a real server on loopback (in this
process, see controlplane.py), driven over HTTP and through the admin CLI."""

import hashlib
import json
import os
import stat

import httpx
import pytest

from nodekeeper.server.client import AdminClient
from nodekeeper.version.decision import decide_update
from nodekeeper.version.schema import parse_announcement
from tests.support import run_main

from .controlplane import TOKEN, ControlPlane
from .releases import release_zip


def write_artifact(path, version, size=200_000):
    """A release zip of ``version`` (the server refuses anything else) padded to ~size."""
    return release_zip(path, version, padding=size)


def publish(server, tmp_path, version, platforms=("linux_amd64",)):
    """Publish through the admin client in-process (the CLI is tested on its own)."""
    artifacts = {}
    for platform in platforms:
        path = tmp_path / f"sn_{version}_{platform}.zip"
        write_artifact(path, version)
        artifacts[platform] = str(path)
    client = AdminClient(server.url, server.token)
    try:
        return client.publish("storagenode", version, artifacts)
    finally:
        client.close()


def state(server):
    """Everything a rejected request must leave alone."""
    with server.admin() as c:
        return (
            httpx.get(server.url + "/").content,
            c.get("/v1/admin/audit").json(),
            sorted(p.name for p in (server.data_dir / "artifacts").rglob("*") if p.is_file()),
        )


def test_empty_announcement_and_openapi(server):
    r = httpx.get(server.url + "/")
    assert r.status_code == 200
    assert r.json() == {"processes": {}}
    assert r.headers["content-type"] == "application/json"
    spec = httpx.get(server.url + "/openapi.json").json()
    assert "/" in spec["paths"] and "/v1/admin/releases" in spec["paths"]
    assert httpx.get(server.url + "/docs").status_code == 404  # off unless --docs


def test_publish_uploads_and_serves_the_same_bytes(server, tmp_path):
    path = tmp_path / "storagenode_linux_amd64.zip"
    digest = write_artifact(path, "1.0.0", 3_000_000)
    size = path.stat().st_size
    out = server.cli(
        "release", "publish", "storagenode", "v1.0.0", "--artifact", f"linux_amd64={path}"
    )
    assert "published storagenode 1.0.0" in out.stdout
    doc = parse_announcement(httpx.get(server.url + "/").content)
    art = doc.processes["storagenode"].minimum.artifacts["linux_amd64"]
    assert (art.sha256, art.size) == (digest, size)
    body = httpx.get(art.url).content
    assert hashlib.sha256(body).hexdigest() == digest
    # resumable: the keeper resumes downloads with Range
    part = httpx.get(art.url, headers={"Range": "bytes=1000000-"})
    assert part.status_code == 206 and part.content == body[1_000_000:]
    # Storj's template URL redirects to the artifact
    template = doc.processes["storagenode"].minimum.url
    r = httpx.get(template.replace("{os}", "linux").replace("{arch}", "amd64"))
    assert r.status_code == 302 and r.headers["location"] == art.url
    # and unpublished uploads are never reachable
    assert not list((server.data_dir / "uploads").iterdir())


def test_remote_artifacts_recorded_with_digest(server, static_host):
    digest = write_artifact(static_host.root / "sn.zip", "1.0.0", 50_000)
    size = (static_host.root / "sn.zip").stat().st_size
    url = f"{static_host.url}/sn.zip"
    server.cli("release", "publish", "storagenode", "1.0.0", "--artifact", f"windows_amd64={url}")
    doc = parse_announcement(httpx.get(server.url + "/").content)
    art = doc.processes["storagenode"].minimum.artifacts["windows_amd64"]
    assert (art.url, art.sha256, art.size) == (url, digest, size)
    r = httpx.get(f"{server.url}/processes/storagenode/minimum/url?os=windows&arch=amd64")
    assert r.status_code == 200 and r.text == url
    assert r.headers["content-type"].startswith("text/plain")


def test_etag_304_and_one_serialization_per_change(server, tmp_path):
    publish(server, tmp_path, "1.0.0")
    first = httpx.get(server.url + "/")
    etag = first.headers["etag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    renders = httpx.get(server.url + "/healthz").json()["renders"]
    with httpx.Client(base_url=server.url) as c:
        for _ in range(200):
            r = c.get("/")
            assert r.content == first.content and r.headers["etag"] == etag
        not_modified = c.get("/", headers={"If-None-Match": etag})
        assert not_modified.status_code == 304 and not_modified.content == b""
        assert c.get("/", headers={"If-None-Match": '"other"'}).status_code == 200
    assert httpx.get(server.url + "/healthz").json()["renders"] == renders
    publish(server, tmp_path, "1.1.0")  # published, not announced: same document
    assert httpx.get(server.url + "/", headers={"If-None-Match": etag}).status_code == 304
    server.cli("minimum", "set", "storagenode", "1.1.0")
    changed = httpx.get(server.url + "/", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag


def test_rollout_moves_the_cursor_and_nodes_follow(server, tmp_path):
    publish(server, tmp_path, "1.0.0")
    publish(server, tmp_path, "1.1.0")
    server.cli("rollout", "start", "storagenode", "1.1.0")  # by hand: stays at 0 %
    proc = parse_announcement(httpx.get(server.url + "/").content).processes["storagenode"]
    assert proc.suggested.version == "1.1.0"
    assert proc.rollout.cursor == "00" * 32
    nodes = [os.urandom(32) for _ in range(2000)]
    assert not any(decide_update("1.0.0", proc, n).target for n in nodes)

    server.cli("rollout", "set", "storagenode", "25")
    proc = parse_announcement(httpx.get(server.url + "/").content).processes["storagenode"]
    assert proc.rollout.cursor.startswith("3fffffff")
    moved = sum(decide_update("1.0.0", proc, n).target == "1.1.0" for n in nodes)
    assert 400 <= moved <= 600  # 25 % of 2000 ± 5 %

    status = json.loads(server.cli("rollout", "status", "--json").stdout)[0]
    # The health check judges at the first poll: its sentence is tested elsewhere.
    assert status["health"] in (None, {**(status["health"] or {}), "action": "continue"})
    assert status | {"started_at": None, "eta_complete": None, "health": None} == {
        "process": "storagenode",
        "minimum": "1.0.0",
        "suggested": None,
        "target": "1.1.0",
        "percent": 25.0,
        "state": "running",
        "rate_per_day": None,
        "started_at": None,
        "eta_complete": None,
        "versions": ["1.0.0", "1.1.0"],
        "reported": {},
        "pause": None,
        "plan": None,
        "health": None,
    }
    table = server.cli("rollout", "status").stdout
    for word in ("storagenode", "1.1.0", "25.00 %", "running"):
        assert word in table
    server.cli("rollout", "set", "storagenode", "100")
    table = server.cli("rollout", "status").stdout
    assert "complete" in table


def test_pause_resume_and_minimum(server, tmp_path):
    for v in ("1.0.0", "1.1.0", "1.2.0"):
        publish(server, tmp_path, v)
    server.cli("rollout", "start", "storagenode", "1.2.0", "--rate", "10000")
    assert "paused" in server.cli("rollout", "pause", "storagenode").stdout
    held = json.loads(server.cli("rollout", "status", "--json").stdout)[0]["percent"]
    before = httpx.get(server.url + "/").content
    import time

    time.sleep(0.3)  # several ramp ticks
    assert httpx.get(server.url + "/").content == before
    assert json.loads(server.cli("rollout", "status", "--json").stdout)[0]["percent"] == held
    assert "running" in server.cli("rollout", "resume", "storagenode").stdout
    server.cli("minimum", "set", "storagenode", "v1.1.0")
    proc = parse_announcement(httpx.get(server.url + "/").content).processes["storagenode"]
    assert proc.minimum.version == "1.1.0"
    # a node below the minimum goes to it whatever the rollout says
    assert decide_update("1.0.0", proc, os.urandom(32)).target == "1.1.0"
    actions = [a["action"] for a in server.admin().get("/v1/admin/audit").json()]
    assert actions[:4] == ["minimum.set", "rollout.resume", "rollout.pause", "rollout.start"]
    entry = server.admin().get("/v1/admin/audit").json()[0]
    assert entry["remote"] == "127.0.0.1" and entry["at"] > 0
    assert entry["detail"] == {"process": "storagenode", "version": "1.1.0", "was": "1.0.0"}


def test_admin_needs_the_token_and_public_is_read_only(server, tmp_path):
    publish(server, tmp_path, "1.0.0")
    before = state(server)
    for headers in (
        {},
        {"Authorization": "Bearer wrong-token-wrong-token"},
        {"Authorization": TOKEN},
    ):
        r = httpx.put(
            f"{server.url}/v1/admin/processes/storagenode/minimum",
            json={"version": "1.0.0"},
            headers=headers,
        )
        assert r.status_code == 401, headers
        assert "token" in r.json()["error"]
    for method in ("POST", "PUT", "DELETE"):
        assert httpx.request(method, server.url + "/").status_code == 405
    bad = server.cli("minimum", "set", "storagenode", "1.0.0", check=False)
    assert bad.returncode == 0  # sanity: the right token works
    assert state(server)[0] == before[0]


MIN = "/v1/admin/processes/storagenode/minimum"
RO = "/v1/admin/processes/storagenode/rollout"
REL = "/v1/admin/releases"
REMOTE = {"platform": "linux_amd64", "url": "https://x.example/a", "sha256": "0" * 64, "size": 1}


def release(version, artifacts):
    return {"process": "storagenode", "version": version, "artifacts": artifacts}


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("PUT", MIN.replace("storagenode", "satellite"), {"version": "1.0.0"}, 404, "unknown"),
        ("POST", RO, {"version": "0.9.0"}, 404, "not published"),
        ("POST", RO, {"version": "1.1.0", "seed": "zz"}, 422, "64 lowercase hex"),
        ("POST", RO, {"version": "1.1.0", "rate_per_day": -1}, 422, "percent per day"),
        ("PUT", RO + "/percent", {"percent": 101}, 422, "between 0 and 100"),
        ("PUT", MIN, {"version": "one"}, 422, "semantic version"),
        ("PUT", MIN, {"vers": "1.0.0"}, 422, "invalid request"),
        ("POST", REL, release("2.0.0", []), 422, "at least 1"),
        ("POST", REL, release("2.0.0", [{**REMOTE, "url": None, "upload_id": "0" * 32}]), 404,
         "upload"),
        ("POST", REL, release("2.0.0", [{**REMOTE, "url": "file:///etc/passwd"}]), 422, "http"),
        ("POST", REL, release("1.0.0", [REMOTE]), 409, "immutable"),
    ],
)  # fmt: skip
def test_bad_input_is_refused_and_changes_nothing(
    server, tmp_path, method, path, body, status, message
):
    publish(server, tmp_path, "1.0.0")
    publish(server, tmp_path, "1.1.0")
    server.cli("minimum", "set", "storagenode", "1.1.0")
    with server.admin() as c:
        if "percent" in path:  # needs a rollout to exist
            c.post("/v1/admin/processes/storagenode/rollout", json={"version": "1.1.0"})
        before = state(server)
        r = c.request(method, path, json=body)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]
    assert state(server) == before


def test_below_minimum_rollout_refused(server, tmp_path):
    publish(server, tmp_path, "1.0.0")
    publish(server, tmp_path, "1.1.0")
    server.cli("minimum", "set", "storagenode", "1.1.0")
    before = state(server)
    r = server.cli("rollout", "start", "storagenode", "1.0.0", "--rate", "5", check=False)
    assert r.returncode == 1 and "below the minimum" in r.stderr and "HTTP 422" in r.stderr
    assert state(server) == before


def test_cli_errors_for_missing_files_and_unreachable_urls(server, tmp_path, static_host):
    publish(server, tmp_path, "1.0.0")
    good = tmp_path / "good.zip"
    write_artifact(good, "2.0.0")
    before = state(server)
    cases = {
        "does not exist": [f"linux_amd64={tmp_path / 'nope.zip'}"],
        "unreachable": [f"linux_amd64={good}", "windows_amd64=http://127.0.0.1:9/sn.zip"],
        "HTTP 404": [f"windows_amd64={static_host.url}/missing.zip"],
        "must be OS_ARCH=PATH_OR_URL": [str(good)],
    }
    for message, artifacts in cases.items():
        args = [a for item in artifacts for a in ("--artifact", item)]
        r = server.cli("release", "publish", "storagenode", "2.0.0", *args, check=False)
        assert r.returncode != 0 and message in r.stderr, (message, r.stderr)
    assert state(server) == before


def test_cli_without_server_or_token_says_how_to_fix(tmp_path):
    cp = ControlPlane(tmp_path / "cp", token=None)
    unset = {"NODEKEEPER_SERVER": None, "NODEKEEPER_ADMIN_TOKEN": None}
    r = run_main(["rollout", "status"], unset)
    assert r.returncode == 2 and "--server URL or set $NODEKEEPER_SERVER" in r.stderr
    r = run_main(["rollout", "status"], {**unset, "NODEKEEPER_SERVER": cp.url})
    assert r.returncode == 2 and "NODEKEEPER_ADMIN_TOKEN" in r.stderr


def test_generated_token_is_private_and_reused(tmp_path):
    cp = ControlPlane(tmp_path / "cp", token=None)
    with cp:
        token_file = cp.data_dir / "admin-token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert f"generated an admin token into {token_file}" in cp.log_path.read_text()
        assert f"dashboard: {cp.url}/dashboard (log in" in cp.log_path.read_text()
        token = token_file.read_text().strip()
        r = httpx.get(cp.url + "/v1/admin/status", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200
    with cp:  # a restart keeps the same token
        assert token_file.read_text().strip() == token
        assert f"admin token from {token_file}" in cp.log_path.read_text()


def test_token_file_option_and_short_tokens(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("a-token-from-a-file-123\n")
    cp = ControlPlane(
        tmp_path / "cp", token=None, extra_args=["--admin-token-file", str(token_file)]
    )
    with cp:
        ok = httpx.get(
            cp.url + "/v1/admin/status", headers={"Authorization": "Bearer a-token-from-a-file-123"}
        )
        assert ok.status_code == 200
    short = ControlPlane(tmp_path / "cp2", token="short")
    with pytest.raises(RuntimeError, match="too short"):
        short.start(timeout=10)
