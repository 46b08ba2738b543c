"""What an operator reads: rollout status at 80 columns, the first release becoming the
minimum said where it happens, the admin token variable named, /docs and the schema."""

from __future__ import annotations

import warnings

import httpx
import pytest
from fastapi.testclient import TestClient

from nodekeeper.cli import build_parser, main
from nodekeeper.server.app import create_app
from nodekeeper.server.auth import AdminToken
from nodekeeper.server.settings import ServerSettings

from .releases import release_zip

DAY = 86_400.0
NOW = 1_796_000_000.0


def settings(tmp_path, **kw) -> ServerSettings:
    return ServerSettings(
        db_url=f"sqlite:///{tmp_path / 'cp.db'}",
        data_dir=tmp_path / "cp",
        public_url="http://127.0.0.1:7780",
        admin_token=AdminToken("t" * 20, "test"),
        **kw,
    )


def test_openapi_schema_builds_without_warnings(tmp_path):
    app = create_app(settings(tmp_path))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        schema = app.openapi()
    assert [str(w.message) for w in caught] == []
    assert "get" in schema["paths"]["/"] and "/v1/admin/releases" in schema["paths"]


def test_docs_are_off_by_default_and_on_by_option(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with TestClient(create_app(settings(tmp_path / "a"))) as c:
        assert c.get("/docs").status_code == 404
        assert c.get("/redoc").status_code == 404
        assert c.get("/openapi.json").status_code == 200  # local, no third party
    with TestClient(create_app(settings(tmp_path / "b", docs=True))) as c:
        assert c.get("/docs").status_code == 200
    assert "--docs" in _help("server", "run")


def _help(*words: str) -> str:
    parser = build_parser()
    action = parser._subparsers._group_actions[0]
    for word in words:
        parser = action.choices[word]
        if parser._subparsers is not None:
            action = parser._subparsers._group_actions[0]
    return parser.format_help()


@pytest.mark.parametrize(
    "words",
    [
        ("release", "publish"),
        ("minimum", "set"),
        ("rollout", "start"),
        ("rollout", "set"),
        ("rollout", "pause"),
        ("rollout", "status"),
    ],
)
def test_admin_commands_name_the_token_variable(words):
    assert "NODEKEEPER_ADMIN_TOKEN" in _help(*words)


def test_missing_token_error_names_the_variable(monkeypatch, capsys):
    monkeypatch.setenv("NODEKEEPER_SERVER", "http://127.0.0.1:9")
    monkeypatch.delenv("NODEKEEPER_ADMIN_TOKEN", raising=False)
    assert main(["rollout", "status"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nodekeeper: error: no admin token: set NODEKEEPER_ADMIN_TOKEN")


# -- rollout status at 80 columns --------------------------------------------------------


def _rows():
    from nodekeeper.server.status_view import render_status

    rows = [
        {
            "process": "storagenode",
            "minimum": "1.118.4",
            "suggested": "1.119.15",
            "target": "1.120.3-rc.1",
            "percent": 37.5,
            "state": "running",
            "rate_per_day": 12.5,
            "started_at": NOW - 3 * DAY,
            "eta_complete": NOW + 5 * DAY,
            "versions": ["1.118.4", "1.119.15", "1.120.3-rc.1"],
            "reported": {
                "1.119.15": {"nodes": 18234, "failures": 0, "failures_by_kind": {}},
                "1.120.3-rc.1": {
                    "nodes": 6811,
                    "failures": 212,
                    "failures_by_kind": {"crash_loop": 150, "preflight_failed": 62},
                },
            },
        },
        {
            "process": "nodekeeper",
            "minimum": "1.0.0",
            "suggested": None,
            "target": None,
            "percent": None,
            "state": "none",
            "rate_per_day": None,
            "started_at": None,
            "eta_complete": None,
            "versions": ["1.0.0"],
            "reported": {},
        },
    ]
    return render_status(rows, width=80)


def test_rollout_status_fits_80_columns_with_every_figure():
    text = _rows()
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines), "\n".join(lines)
    for figure in (
        "storagenode",
        "1.118.4",
        "1.119.15",
        "1.120.3-rc.1",
        "37.50 %",
        "running",
        "12.5 %/day",
        "18234",
        "6811",
        "212",
        "crash_loop 150",
        "preflight_failed 62",
        "nodekeeper",
    ):
        assert any(figure in line for line in lines), (figure, text)


# -- the first release becomes the minimum: said where it happens ------------------------


def test_first_release_and_a_rollout_of_the_minimum_say_what_happens(
    server, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("NODEKEEPER_SERVER", server.url)
    monkeypatch.setenv("NODEKEEPER_ADMIN_TOKEN", server.token)
    release_zip(tmp_path / "a.zip", "1.2.0")
    release_zip(tmp_path / "b.zip", "1.3.0")
    pub = ["release", "publish", "storagenode"]
    assert main([*pub, "1.2.0", "--artifact", f"linux_amd64={tmp_path / 'a.zip'}"]) == 0
    err = capsys.readouterr().err
    assert "first release of storagenode, so it is the minimum" in err
    assert "every node installs it now" in err
    assert main(["rollout", "start", "storagenode", "1.2.0", "--rate", "10"]) == 0
    out = capsys.readouterr()
    assert "1.2.0 is the minimum" in out.err and "--rate has no effect" in out.err
    # a later release is not the minimum, and rolling it out says nothing extra
    assert main([*pub, "1.3.0", "--artifact", f"linux_amd64={tmp_path / 'b.zip'}"]) == 0
    assert "minimum" not in capsys.readouterr().err
    assert main(["rollout", "start", "storagenode", "1.3.0", "--rate", "10"]) == 0
    assert capsys.readouterr().err == ""
    doc = httpx.get(server.url + "/").json()["processes"]["storagenode"]
    assert doc["minimum"]["version"] == "1.2.0" and doc["suggested"]["version"] == "1.3.0"
