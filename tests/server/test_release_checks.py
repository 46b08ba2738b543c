"""Releases that cannot work are refused, by the server and by `release publish`,
and a refusal changes nothing: not the document, not the audit, not the artifact dir."""

from __future__ import annotations

import zipfile

import httpx
import pytest
from fastapi.testclient import TestClient

from nodekeeper.cli import main
from nodekeeper.server.app import create_app
from nodekeeper.server.auth import AdminToken
from nodekeeper.server.settings import ServerSettings

from .controlplane import TOKEN
from .releases import release_zip

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def app(tmp_path):
    """The control plane in-process: exact and fast, over a real SQLite file."""
    settings = ServerSettings(
        db_url=f"sqlite:///{tmp_path / 'cp.db'}",
        data_dir=tmp_path / "cp",
        public_url="http://127.0.0.1:7780",
        admin_token=AdminToken(TOKEN, "test"),
    )
    with TestClient(create_app(settings), headers=AUTH) as client:
        client.settings = settings
        yield client


def snapshot(client) -> tuple:
    """Everything a refused publish must leave alone."""
    root = client.settings.artifact_dir
    return (
        client.get("/").content,
        client.get("/v1/admin/audit").json(),
        sorted(str(p.relative_to(root)) for p in root.rglob("*")),
    )


def upload_and_publish(client, path, version, platform="linux_amd64", process="storagenode"):
    up = client.put("/v1/admin/uploads", content=path.read_bytes())
    assert up.status_code == 200, up.text
    spec = {"platform": platform, "upload_id": up.json()["upload_id"], "filename": path.name}
    body = {"process": process, "version": version, "artifacts": [spec]}
    return client.post("/v1/admin/releases", json=body)


def not_a_zip(path):
    path.write_bytes(b"MZ this is an exe, not a zip" * 100)


def mislabelled(path):
    release_zip(path, "1.0.0", manifest_version="1.0.1")


def other_process(path):
    release_zip(path, "1.0.0", process="nodekeeper")


def two_loose_files(path):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("storagenode", b"\x7fELF")
        zf.writestr("README.txt", b"hi")


def good(path):
    release_zip(path, "1.0.0")


CASES = [
    # (make the file, platform, what the message must say)
    (not_a_zip, "linux_amd64", "not a readable zip"),
    (mislabelled, "linux_amd64", "says it is storagenode 1.0.1, not 1.0.0"),
    (other_process, "linux_amd64", "for process 'nodekeeper', not 'storagenode'"),
    (two_loose_files, "linux_amd64", "must hold exactly one executable"),
    (good, "linux_x86_64", "unknown platform 'linux_x86_64'; use one of: darwin_386"),
]


@pytest.mark.parametrize(("make", "platform", "message"), CASES)
def test_server_refuses_releases_that_cannot_work(app, tmp_path, make, platform, message):
    release_zip(tmp_path / "first.zip", "0.9.0")
    assert upload_and_publish(app, tmp_path / "first.zip", "0.9.0").status_code == 201
    path = tmp_path / "candidate.zip"
    make(path)
    before = snapshot(app)
    r = upload_and_publish(app, path, "1.0.0", platform=platform)
    assert r.status_code == 422, r.text
    assert message in r.json()["error"]
    if platform == "linux_amd64":  # an artifact problem says how to build a good one
        assert "Artifact format" in r.json()["error"]
    assert snapshot(app) == before


def test_server_accepts_a_good_release_and_a_bare_executable(app, tmp_path):
    release_zip(tmp_path / "a.zip", "1.0.0")
    assert upload_and_publish(app, tmp_path / "a.zip", "1.0.0").status_code == 201
    with zipfile.ZipFile(tmp_path / "storj.zip", "w") as zf:  # Storj's own format
        zf.writestr("storagenode.exe", b"MZ...")
    r = upload_and_publish(app, tmp_path / "storj.zip", "1.1.0", platform="windows_amd64")
    assert r.status_code == 201, r.text


# -- the CLI, against a real server on loopback ------------------------------------------


@pytest.fixture
def cli(server, monkeypatch):
    monkeypatch.setenv("NODEKEEPER_SERVER", server.url)
    monkeypatch.setenv("NODEKEEPER_ADMIN_TOKEN", server.token)
    return server


def cp_state(server) -> tuple:
    with server.admin() as c:
        return (
            httpx.get(server.url + "/").content,
            c.get("/v1/admin/audit").json(),
            sorted(str(p) for p in server.data_dir.joinpath("artifacts").rglob("*")),
            sorted(p.name for p in server.data_dir.joinpath("uploads").iterdir()),
        )


def publish_argv(version, *artifacts):
    return ["release", "publish", "storagenode", version] + [
        a for item in artifacts for a in ("--artifact", item)
    ]


@pytest.mark.parametrize(("make", "platform", "message"), CASES)
def test_cli_refuses_before_uploading(cli, tmp_path, capsys, make, platform, message):
    release_zip(tmp_path / "first.zip", "0.9.0")
    assert main(publish_argv("0.9.0", f"linux_amd64={tmp_path / 'first.zip'}")) == 0
    path = tmp_path / "candidate.zip"
    make(path)
    release_zip(tmp_path / "fine.zip", "1.0.0")
    before = cp_state(cli)
    capsys.readouterr()
    # A good artifact listed first: it must not be uploaded either (uploads stay empty).
    argv = publish_argv("1.0.0", f"windows_amd64={tmp_path / 'fine.zip'}", f"{platform}={path}")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("nodekeeper: error: ") and err.count("\n") == 1, err
    assert message in err
    assert cp_state(cli) == before


def test_cli_checks_the_version_is_free_before_uploading(cli, tmp_path, capsys):
    release_zip(tmp_path / "a.zip", "1.0.0")
    assert main(publish_argv("1.0.0", f"linux_amd64={tmp_path / 'a.zip'}")) == 0
    before = cp_state(cli)
    capsys.readouterr()
    assert main(publish_argv("v1.0.0", f"linux_amd64={tmp_path / 'a.zip'}")) == 1
    err = capsys.readouterr().err
    assert "storagenode 1.0.0 is already published" in err and "immutable" in err
    assert cp_state(cli) == before  # nothing was uploaded: uploads/ is still empty


def test_cli_checks_remote_artifacts_too(cli, tmp_path, static_host, capsys):
    release_zip(static_host.root / "sn.zip", "1.0.0", manifest_version="1.0.3")
    before = cp_state(cli)
    assert main(publish_argv("1.0.0", f"linux_amd64={static_host.url}/sn.zip")) == 2
    err = capsys.readouterr().err
    assert f"{static_host.url}/sn.zip" in err and "says it is storagenode 1.0.3" in err
    assert cp_state(cli) == before
    release_zip(static_host.root / "ok.zip", "1.0.0")
    assert main(publish_argv("1.0.0", f"linux_amd64={static_host.url}/ok.zip")) == 0


def test_public_url_needs_a_scheme(tmp_path, capsys):
    data = tmp_path / "cp"
    argv = ["server", "run", "--data-dir", str(data), "--public-url", "version.example.net"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--public-url 'version.example.net'" in err and "https://version.example.net" in err
    assert not data.exists() or not any(data.iterdir())
