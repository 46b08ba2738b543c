"""`storagenode setup` and the not-configured exit, through the real command."""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from nodekeeper.version.nodeid import parse_node_id
from storagenode import exitcodes
from storagenode.identity import load_identity
from tests.nodes import DEV_NODE, run_once, setup_node


def _setup(tmp_path: Path, *extra: str, storage: Path | None = None, allocated: str = "1 MB"):
    return run_once(
        DEV_NODE,
        "setup",
        "--config-dir",
        str(tmp_path / "config"),
        "--storage-dir",
        str(storage or tmp_path / "storage"),
        "--allocated",
        allocated,
        *extra,
    )


def _refused(result, needle: str) -> None:
    assert result.returncode == exitcodes.SETUP_REFUSED, result.stderr
    assert needle in result.stderr
    assert '"level": "ERROR"' in result.stderr


def test_setup_writes_config_identity_and_token(tmp_path: Path) -> None:
    result = _setup(tmp_path, "--listen", "127.0.0.1:1234", "--control-listen", "[::1]:1235")
    assert result.returncode == 0, result.stderr
    config_dir = tmp_path / "config"
    config = tomllib.loads((config_dir / "config.toml").read_text())
    assert config["allocated_bytes"] == 10**6
    assert config["listen"] == "127.0.0.1:1234" and config["control_listen"] == "[::1]:1235"
    assert Path(config["storage_dir"]) == tmp_path / "storage"
    _key, raw_id = load_identity(config_dir / "identity.key")
    printed = result.stdout.split("node ID: ")[1].split()[0]
    assert parse_node_id(printed) == raw_id and raw_id[-1] == 0
    assert len((config_dir / "shutdown.token").read_text().strip()) == 64
    if os.name == "posix":
        assert (config_dir / "identity.key").stat().st_mode & 0o077 == 0
        assert (config_dir / "shutdown.token").stat().st_mode & 0o077 == 0


def test_defaults_are_the_documented_addresses(tmp_path: Path) -> None:
    assert _setup(tmp_path).returncode == 0
    config = tomllib.loads((tmp_path / "config" / "config.toml").read_text())
    assert (config["listen"], config["control_listen"]) == ("127.0.0.1:28967", "127.0.0.1:7778")


def test_refuses_to_replace_an_identity(tmp_path: Path) -> None:
    assert _setup(tmp_path).returncode == 0
    before = (tmp_path / "config" / "identity.key").read_bytes()
    _refused(_setup(tmp_path, storage=tmp_path / "other"), "identity already exists")
    assert (tmp_path / "config" / "identity.key").read_bytes() == before
    assert not (tmp_path / "other").exists()


@pytest.mark.parametrize("size", ["lots", "0", "-1 GB", "5 XB"])
def test_refuses_bad_sizes(tmp_path: Path, size: str) -> None:
    _refused(_setup(tmp_path, allocated=size), "--allocated")
    assert not (tmp_path / "config").exists()  # nothing written before all checks pass


def test_refuses_more_than_free_space(tmp_path: Path) -> None:
    free = shutil.disk_usage(tmp_path).free
    result = _setup(tmp_path, allocated=str(free))
    _refused(result, "allocate at most")
    assert not (tmp_path / "config" / "identity.key").exists()


def test_refuses_a_storage_dir_that_cannot_be_made(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    _refused(_setup(tmp_path, storage=tmp_path / "file" / "sub"), "cannot create")
    _refused(_setup(tmp_path, storage=tmp_path / "file"), "not a directory")


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs Linux sysfs")
def test_refuses_an_unwritable_storage_dir_even_as_root(tmp_path: Path) -> None:
    # sysfs refuses new files to every user, root included, unlike a chmod-ed dir.
    _refused(_setup(tmp_path, storage=Path("/sys/kernel")), "not writable")


def test_refuses_a_read_only_storage_dir(tmp_path: Path) -> None:
    # A read-only file system stops root too, unlike permission bits.
    storage = tmp_path / "ro"
    storage.mkdir()
    if os.geteuid() == 0:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", storage], check=True)
    else:
        storage.chmod(0o500)
    try:
        _refused(_setup(tmp_path, storage=storage), "not writable")
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", storage], check=True)


def test_refuses_a_storage_dir_of_another_node(tmp_path: Path) -> None:
    first = setup_node(tmp_path / "a")
    result = _setup(tmp_path, storage=first.storage_dir)
    _refused(result, "already holds the pieces of node")


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--control-listen", "0.0.0.0:7778"], "must be loopback"),
        (["--listen", "127.0.0.1:0"], "choose a port"),
        (["--listen", "nonsense"], "HOST:PORT"),
        (["--listen", "127.0.0.1:7778"], "must differ"),
    ],
)
def test_refuses_bad_addresses(tmp_path: Path, flags: list[str], needle: str) -> None:
    _refused(_setup(tmp_path, *flags), needle)


def test_run_without_setup_exits_78_with_the_hint(tmp_path: Path) -> None:
    result = run_once(DEV_NODE, "run", "--config-dir", str(tmp_path / "nothing"))
    assert result.returncode == exitcodes.NOT_CONFIGURED == 78
    assert "not configured: run storagenode setup --config-dir" in result.stderr
    assert '"level": "ERROR"' in result.stderr


def test_run_with_a_broken_config_exits_78(tmp_path: Path) -> None:
    setup = setup_node(tmp_path)
    (setup.config_dir / "config.toml").write_text("allocated_bytes = 'many'\n")
    result = run_once(DEV_NODE, "run", "--config-dir", str(setup.config_dir))
    assert result.returncode == exitcodes.NOT_CONFIGURED, result.stderr
    assert "config_format" in result.stderr


def test_run_refuses_a_missing_storage_dir(tmp_path: Path) -> None:
    # e.g. the external drive is not mounted: never start on an empty dir instead.
    setup = setup_node(tmp_path)
    shutil.rmtree(setup.storage_dir)
    result = run_once(DEV_NODE, "run", "--config-dir", str(setup.config_dir))
    assert result.returncode == exitcodes.STORAGE_UNAVAILABLE, result.stderr
    assert "does not exist" in result.stderr
    assert not setup.storage_dir.exists()


def test_version_prints_the_line_storj_tools_parse() -> None:
    result = run_once(DEV_NODE, "version")
    assert result.returncode == 0
    assert result.stdout == "Version: 0.0.0-dev\n"


def test_info_prints_the_node_id(tmp_path: Path) -> None:
    import json

    setup = setup_node(tmp_path)
    result = run_once(DEV_NODE, "info", "--config-dir", str(setup.config_dir))
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    _key, raw_id = load_identity(setup.config_dir / "identity.key")
    assert parse_node_id(info["node_id"]) == raw_id
    assert info["control_listen"] == f"127.0.0.1:{setup.control_port}"
    missing = run_once(DEV_NODE, "info", "--config-dir", str(tmp_path / "none"))
    assert missing.returncode == exitcodes.NOT_CONFIGURED
