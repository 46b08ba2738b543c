"""`nodekeeper server run` fails at start with one clear line, and before it creates
anything; and it warns when nodes could not reach the URLs it announces."""

from __future__ import annotations

import time

import pytest

from nodekeeper.cli import main
from tests.support import free_port

from .controlplane import ControlPlane


def run(argv, capsys) -> tuple[int, str]:
    code = main(["server", "run", *argv])
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    return code, out.err


def created(data_dir) -> list[str]:
    return sorted(p.name for p in data_dir.iterdir()) if data_dir.exists() else []


def test_db_that_is_not_a_url(tmp_path, capsys):
    code, err = run(["--data-dir", str(tmp_path / "cp"), "--db", "notaurl"], capsys)
    assert code == 2
    assert err.startswith("nodekeeper: error: --db 'notaurl' is not a database URL")
    assert "postgresql://" in err and err.count("\n") == 1
    assert created(tmp_path / "cp") == []


def test_db_that_is_down_fails_at_once_without_waiting(tmp_path, capsys):
    url = f"postgresql://nodekeeper@127.0.0.1:{free_port()}/postgres"
    argv = ["--data-dir", str(tmp_path / "cp"), "--db", url, "--db-wait", "0"]
    code, err = run(argv, capsys)
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("nodekeeper: error: the database at postgresql://nodekeeper@127.0.0.1")
    assert "is unreachable" in last and "--db-wait" in last
    assert "admin-token" not in created(tmp_path / "cp")


def test_db_that_stays_down_is_retried_with_backoff_then_given_up(tmp_path, capsys):
    url = f"postgresql+psycopg://nodekeeper@127.0.0.1:{free_port()}/postgres"
    argv = ["--data-dir", str(tmp_path / "cp"), "--db", url, "--db-wait", "2"]
    started = time.monotonic()
    code, err = run(argv, capsys)
    elapsed = time.monotonic() - started
    assert code == 1
    retries = [line for line in err.splitlines() if "retrying in" in line]
    assert len(retries) >= 2, err  # 0.5 s, then 1 s, ... within the 2 s allowed
    assert "waited 2 s" in err.splitlines()[-1]
    assert 2 <= elapsed < 60  # bounded by --db-wait (generously: the machine is loaded)


def test_second_server_on_a_port_in_use_creates_nothing(tmp_path, capsys):
    with ControlPlane(tmp_path / "first") as first:
        second = tmp_path / "second"
        code, err = run(["--data-dir", str(second), "--listen", f"127.0.0.1:{first.port}"], capsys)
        assert code == 1
        assert err.startswith(f"nodekeeper: error: cannot listen on 127.0.0.1:{first.port}")
        assert "in use" in err and err.count("\n") == 1
        assert created(second) == []  # no token, no database
        assert first.running


@pytest.mark.parametrize(
    ("given", "host", "url", "warning"),
    [
        ("https://v.example.net/", "0.0.0.0", "https://v.example.net", None),
        (None, "127.0.0.1", "http://127.0.0.1:7780", "only this machine"),
        (None, "0.0.0.0", "http://0.0.0.0:7780", "no node can reach"),
        (None, "::", "http://[::]:7780", "no node can reach"),
        ("http://0.0.0.0:7780", "0.0.0.0", "http://0.0.0.0:7780", "no node can reach"),
    ],
)
def test_public_url_warnings(given, host, url, warning):
    from nodekeeper.server.startup import public_url_for

    got, warnings = public_url_for(given, host, 7780)
    assert got == url
    if warning is None:
        assert warnings == []
    else:
        (line,) = warnings
        assert warning in line and "--public-url https://" in line


@pytest.mark.parametrize("bad", ["version.example.net", "ftp://x.example", "https://", "http:///a"])
def test_public_url_must_be_absolute_http(bad):
    from nodekeeper.server.startup import public_url_for

    with pytest.raises(ValueError, match="--public-url"):
        public_url_for(bad, "127.0.0.1", 7780)


def test_server_on_all_interfaces_warns_at_start(tmp_path):
    port = free_port()
    cp = ControlPlane(tmp_path / "cp", port=port, extra_args=["--listen", f"0.0.0.0:{port}"])
    with cp:
        log = cp.log_path.read_text()
    assert f"http://0.0.0.0:{port}" in log and "--public-url https://" in log
