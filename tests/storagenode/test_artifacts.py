"""Release artifacts, good and faulty, installed and run as the keeper will run them."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import psutil
import pytest

from nodekeeper.version.manifest import MANIFEST_NAME, manifest_for_zip, parse_manifest
from storagenode import exitcodes, migrations
from storagenode.store import DB_FILE
from tests.artifacts import FAULTY_KINDS, build_faulty, build_good, install, node_argv
from tests.nodes import NodeProcess, NodeSetup, run_once, setup_node

BASE_SCHEMA = migrations.code_version(migrations.MIGRATIONS)


def _installed(zip_path: Path, root: Path) -> list[str]:
    """argv prefix (without the command) of the artifact installed under root."""
    install_dir = install(zip_path, root / zip_path.stem)
    return node_argv(install_dir)


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    out = tmp_path_factory.mktemp("releases")
    root = tmp_path_factory.mktemp("installed")
    zips = {
        "1.0.0": build_good("1.0.0", out / "good"),
        "1.1.0": build_good("1.1.0", out / "good", extra_migration=True),
        "1.2.0": build_good("1.2.0", out / "good", extra_migration=1),
    }
    for kind in FAULTY_KINDS:
        options = {"hang_after": 0.5} if kind == "hang_after_start" else {}
        if kind == "slow_start":
            options = {"start_delay": 1.0}
        if kind == "slow_migration":
            options = {"migration_seconds": 1.5}
        zips[kind] = build_faulty(kind, "2.0.0", out / kind, **options)
    return {name: _installed(path, root / name) for name, path in zips.items()}


def test_release_command_builds_a_reproducible_zip(tmp_path: Path) -> None:
    def build(out: Path) -> Path:
        result = subprocess.run(
            [sys.executable, "-m", "storagenode.release", "--version", "v3.1.4", "--out", str(out)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        path = Path(result.stdout.strip())
        assert path == out / "storagenode_3.1.4.zip"
        return path

    first, second = build(tmp_path / "a"), build(tmp_path / "b")
    assert (
        hashlib.sha256(first.read_bytes()).digest() == hashlib.sha256(second.read_bytes()).digest()
    )
    with zipfile.ZipFile(first) as zf:
        names = zf.namelist()
        manifest = manifest_for_zip(names, zf.read(MANIFEST_NAME))
        assert 'VERSION = "3.1.4"' in zf.read("storagenode/buildinfo.py").decode()
    assert (manifest.process, manifest.version) == ("storagenode", "3.1.4")
    assert manifest == parse_manifest(zipfile.ZipFile(first).read(MANIFEST_NAME))
    assert not any("__pycache__" in n for n in names)

    bad = subprocess.run(
        [sys.executable, "-m", "storagenode.release", "--version", "x", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "semantic version" in bad.stderr


def test_installed_artifacts_report_their_baked_in_version(releases: dict[str, list[str]]) -> None:
    for name in ("1.0.0", "1.1.0", "leak_memory"):
        result = run_once(releases[name], "version")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"Version: {'2.0.0' if name == 'leak_memory' else name}"


def test_upgrade_with_a_migration_then_the_old_version_refuses(
    tmp_path: Path, releases: dict[str, list[str]]
) -> None:
    setup = setup_node(tmp_path, allocated="10 MB", argv=releases["1.0.0"])
    with NodeProcess(setup, releases["1.0.0"]).start() as node:
        pulse = node.wait_ready()
        assert (pulse["version"], pulse["schema_version"]) == ("1.0.0", BASE_SCHEMA)
        data = b"survives upgrades"
        put = httpx.put(
            f"{setup.url}/pieces/p",
            content=data,
            headers={"X-Content-SHA256": hashlib.sha256(data).hexdigest()},
        )
        assert put.status_code == 201
        assert node.shutdown().status_code == 202
        assert node.wait() == 0
    for version in ("1.1.0", "1.2.0"):
        with NodeProcess(setup, releases[version]).start() as node:
            pulse = node.wait_ready()
            assert (pulse["version"], pulse["schema_version"]) == (version, BASE_SCHEMA + 1)
            assert httpx.get(f"{setup.url}/pieces/p").content == data
            node.terminate()
            assert node.wait() == 0
    old = run_once(releases["1.0.0"], "run", "--config-dir", str(setup.config_dir))
    assert old.returncode == exitcodes.DOWNGRADE_REFUSED
    assert "downgrade not supported" in old.stderr


@pytest.fixture
def fresh(tmp_path: Path) -> NodeSetup:
    return setup_node(tmp_path, allocated="10 MB")


def test_crash_at_start(fresh: NodeSetup, releases: dict[str, list[str]]) -> None:
    result = run_once(releases["crash_at_start"], "run", "--config-dir", str(fresh.config_dir))
    assert result.returncode == 1
    assert '"level": "ERROR"' in result.stderr and "Traceback" in result.stderr


def test_exit_zero_at_once(fresh: NodeSetup, releases: dict[str, list[str]]) -> None:
    started = time.monotonic()
    result = run_once(releases["exit_zero"], "run", "--config-dir", str(fresh.config_dir))
    assert result.returncode == 0
    assert time.monotonic() - started < 5
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{fresh.control_url}/pulse", timeout=1)


def test_broken_version_fails_preflight(releases: dict[str, list[str]]) -> None:
    result = run_once(releases["broken_version"], "version")
    assert result.returncode == 1 and "Version:" not in result.stdout


def test_slow_start(fresh: NodeSetup, releases: dict[str, list[str]]) -> None:
    started = time.monotonic()
    with NodeProcess(fresh, releases["slow_start"]).start() as node:
        node.wait_ready()
        assert time.monotonic() - started >= 1.0


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_hang_after_start(fresh: NodeSetup, releases: dict[str, list[str]]) -> None:
    with NodeProcess(fresh, releases["hang_after_start"]).start() as node:
        assert node.wait_ready()["version"] == "2.0.0"
        # It hangs 1 s after its first pulse: wait for it to say so, not for a time.
        deadline = time.monotonic() + 30
        while not any(line["msg"] == "fixture: node hangs now" for line in node.log_lines()):
            assert time.monotonic() < deadline, "the node never hung"
            time.sleep(0.05)
        with pytest.raises(httpx.TimeoutException):
            node.pulse(timeout=0.5)
        node.terminate()  # a hung node ignores the polite stop...
        time.sleep(0.5)
        assert node.proc is not None and node.proc.poll() is None
        node.kill9()  # ...and only a kill ends it
        assert node.proc.returncode == -signal.SIGKILL


def test_leak_memory(fresh: NodeSetup, releases: dict[str, list[str]]) -> None:
    with NodeProcess(fresh, releases["leak_memory"]).start() as node:
        node.wait_ready()
        proc = psutil.Process(node.pid)
        first = proc.memory_info().rss
        # It grows ~20 MB/s by default; how much fits in a given second depends on the
        # machine's load, so wait for the growth (with a deadline) rather than a time.
        deadline = time.monotonic() + 30
        while (grown := proc.memory_info().rss - first) <= 15 * 2**20:
            assert time.monotonic() < deadline, f"grew only {grown} bytes in 30 s"
            time.sleep(0.1)
        assert node.pulse()["version"] == "2.0.0"  # it still answers: only memory says so


def test_fail_migration_half_way(fresh: NodeSetup, releases: dict[str, list[str]]) -> None:
    result = run_once(releases["fail_migration"], "run", "--config-dir", str(fresh.config_dir))
    assert result.returncode == exitcodes.MIGRATION_FAILED == 70
    assert "fails half-way" in result.stderr and "rolled back" in result.stderr
    conn = sqlite3.connect(fresh.storage_dir / DB_FILE)
    # The first added migration committed, the second rolled back entirely ...
    assert migrations.db_version(conn) == BASE_SCHEMA + 1
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "half_a" in tables and "half_b" not in tables
    conn.close()
    # ... so the previous version can no longer open it: the keeper must hold, not roll back.
    old = run_once(releases["1.0.0"], "run", "--config-dir", str(fresh.config_dir))
    assert old.returncode == exitcodes.DOWNGRADE_REFUSED


@pytest.mark.skipif(os.name != "posix", reason="runs a shell script as the native binary")
def test_a_bare_executable_zip_is_an_artifact(tmp_path: Path) -> None:
    # Storj's release format: a zip holding just the node binary, no manifest.
    script = b"#!/bin/sh\necho 'Version: v1.99.3'\n"
    zip_path = tmp_path / "storagenode_linux_amd64.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        zf.writestr("storagenode", script)
    install_dir = install(zip_path, tmp_path / "v1.99.3")
    binary = install_dir / "storagenode"
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)  # zips rarely keep the x bit
    argv = node_argv(install_dir)
    assert argv == [str(binary)]
    assert run_once(argv, "version").stdout.strip() == "Version: v1.99.3"


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_stop_during_a_migration_waits_for_it(
    fresh: NodeSetup, releases: dict[str, list[str]]
) -> None:
    with NodeProcess(fresh, releases["slow_migration"]).start() as node:
        db = fresh.storage_dir / DB_FILE
        deadline = time.monotonic() + 10
        while not db.exists():  # the migration is under way once the database exists
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(0.3)
        node.terminate()
        assert node.wait() == exitcodes.OK
        assert any(line["msg"] == "stopped before serving" for line in node.log_lines())
    conn = sqlite3.connect(db)
    assert migrations.db_version(conn) == BASE_SCHEMA + 1
    conn.close()
