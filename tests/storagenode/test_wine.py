"""The node artifact on the Windows runtime under Wine: what the keeper runs on Windows."""

from __future__ import annotations

import hashlib
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from nodekeeper.version.manifest import MANIFEST_NAME, parse_manifest, run_argv
from storagenode import exitcodes
from tests.artifacts import build_good, install
from tests.nodes import free_port
from tests.windows.wine import WineRuntime, windows_path

pytestmark = pytest.mark.wine


def _argv(wine: WineRuntime, install_dir: Path, *args: str) -> list[str]:
    manifest = parse_manifest((install_dir / MANIFEST_NAME).read_bytes())
    return [
        "wine",
        *run_argv(manifest, windows_path(install_dir), wine.python, args, sep="\\"),
    ]


def _run(wine: WineRuntime, argv: list[str]) -> subprocess.CompletedProcess[str]:
    # Output through pipes only: a Windows python.exe dies writing to a regular file.
    return subprocess.run(
        argv, env=wine.env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120
    )


def test_artifact_runs_on_the_windows_runtime(tmp_path: Path, wine: WineRuntime) -> None:
    install_dir = install(build_good("4.5.6", tmp_path / "zips"), tmp_path / "v4.5.6")
    version = _run(wine, _argv(wine, install_dir, "version"))
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == "Version: 4.5.6"

    config = windows_path(tmp_path / "config")
    assert _run(wine, _argv(wine, install_dir, "run", "--config-dir", config)).returncode == (
        exitcodes.NOT_CONFIGURED
    )
    port, control = free_port(), free_port()
    setup = _run(
        wine,
        _argv(
            wine,
            install_dir,
            "setup",
            "--config-dir",
            config,
            "--storage-dir",
            windows_path(tmp_path / "storage"),
            "--allocated",
            "10 MB",
            "--listen",
            f"127.0.0.1:{port}",
            "--control-listen",
            f"127.0.0.1:{control}",
        ),
    )
    assert setup.returncode == 0, setup.stderr

    node = subprocess.Popen(
        _argv(wine, install_dir, "run", "--config-dir", config),
        env=wine.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert node.poll() is None, node.communicate()[1]
            try:
                pulse = httpx.get(f"http://127.0.0.1:{control}/pulse", timeout=2).json()
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "no pulse from the node under Wine"
                time.sleep(0.1)
        assert pulse["version"] == "4.5.6"
        data = b"piece on windows" * 1000
        put = httpx.put(
            f"http://127.0.0.1:{port}/pieces/w1",
            content=data,
            headers={"X-Content-SHA256": hashlib.sha256(data).hexdigest()},
            timeout=30,
        )
        assert put.status_code == 201, put.text
        assert httpx.get(f"http://127.0.0.1:{port}/pieces/w1", timeout=30).content == data
        token = (tmp_path / "config" / "shutdown.token").read_text().strip()
        stop = httpx.post(
            f"http://127.0.0.1:{control}/shutdown",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert stop.status_code == 202
        _out, err = node.communicate(timeout=60)
        assert node.returncode == 0, err
        assert b'"msg": "node stopped"' in err
    finally:
        if node.poll() is None:
            node.kill()
            node.communicate()
