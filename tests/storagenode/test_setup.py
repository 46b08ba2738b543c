"""`storagenode setup` and the not-configured exit, through the real command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from nodekeeper.version.nodeid import parse_node_id
from storagenode import exitcodes
from storagenode.config import load_config
from storagenode.identity import load_identity, new_identity_pem, node_id_text
from tests.nodes import DEV_NODE, NodeProcess, NodeSetup, free_port, run_once, setup_node


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
    _refused(result, "--allocated: the allocation")
    _refused(result, "allocate at most")
    _nothing_written(tmp_path)  # judged before the storage dir is made


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
    setup = setup_node(tmp_path)
    result = run_once(DEV_NODE, "info", "--config-dir", str(setup.config_dir))
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    _key, raw_id = load_identity(setup.config_dir / "identity.key")
    assert parse_node_id(info["node_id"]) == raw_id
    assert info["control_listen"] == f"127.0.0.1:{setup.control_port}"
    missing = run_once(DEV_NODE, "info", "--config-dir", str(tmp_path / "none"))
    assert missing.returncode == exitcodes.NOT_CONFIGURED


# -- the operator's settings (decision 067) -------------------------------------------------

WALLET = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"  # an EIP-55 example


def _operator_flags(**overrides: str) -> list[str]:
    values = {
        "--wallet": WALLET,
        "--email": "operator@example.com",
        "--external-address": "MyNode.Example.com:28967",
        **overrides,
    }
    return [part for flag, value in values.items() for part in (flag, value)]


def _nothing_written(tmp_path: Path) -> None:
    assert not (tmp_path / "config").exists()
    assert not (tmp_path / "storage").exists()


def test_operator_settings_are_stored_and_read_back(tmp_path: Path) -> None:
    result = _setup(tmp_path, *_operator_flags())
    assert result.returncode == 0, result.stderr
    assert f"wallet: {WALLET}" in result.stdout
    config_dir = tmp_path / "config"
    written = tomllib.loads((config_dir / "config.toml").read_text())
    assert written["operator"] == {
        "wallet": WALLET,
        "email": "operator@example.com",
        "external_address": "mynode.example.com:28967",  # normalised
    }
    config = load_config(config_dir)
    assert (config.wallet, config.email, config.external_address) == (
        WALLET,
        "operator@example.com",
        "mynode.example.com:28967",
    )
    info = run_once(DEV_NODE, "info", "--config-dir", str(config_dir))
    assert json.loads(info.stdout)["operator"]["wallet"] == WALLET


def test_a_config_without_operator_settings_loads_as_before(tmp_path: Path) -> None:
    assert _setup(tmp_path).returncode == 0
    assert "operator" not in tomllib.loads((tmp_path / "config" / "config.toml").read_text())
    config = load_config(tmp_path / "config")
    assert (config.wallet, config.email, config.external_address) == (None, None, None)


def test_the_node_runs_with_operator_settings_and_logs_them(tmp_path: Path) -> None:
    setup = NodeSetup(tmp_path / "config", tmp_path / "storage", free_port(), free_port())
    listen = ["--listen", f"127.0.0.1:{setup.port}"]
    control = ["--control-listen", f"127.0.0.1:{setup.control_port}"]
    assert _setup(tmp_path, *listen, *control, *_operator_flags()).returncode == 0
    with NodeProcess(setup).start() as node:
        node.wait_ready()
        assert node.shutdown().status_code == 202
        assert node.wait() == 0
    (line,) = [line for line in node.log_lines() if line["msg"] == "operator"]
    assert line["wallet"] == WALLET and line["external_address"] == "mynode.example.com:28967"


@pytest.mark.parametrize(
    ("flag", "value", "needles"),
    [
        # One letter's case flipped: the checksum says so, and gives the corrected form.
        ("--wallet", WALLET[:-1] + "D", ["--wallet:", "EIP-55", WALLET]),
        ("--wallet", "0x1234", ["--wallet:", "4 characters after 0x instead of 40"]),
        ("--email", "operator", ["--email:", "exactly one @"]),
        ("--external-address", "mynode.example.com", ["--external-address:", "no port"]),
    ],
)
def test_a_bad_operator_setting_refuses_setup_and_writes_nothing(
    tmp_path: Path, flag: str, value: str, needles: list[str]
) -> None:
    result = _setup(tmp_path, *_operator_flags(**{flag: value}))
    for needle in needles:
        _refused(result, needle)
    _nothing_written(tmp_path)


def _mode_is_private(path: Path) -> bool:
    return os.name != "posix" or path.stat().st_mode & 0o077 == 0


def test_an_existing_identity_is_copied(tmp_path: Path) -> None:
    first = setup_node(tmp_path / "a")
    source = first.config_dir / "identity.key"
    before = source.read_bytes()
    result = _setup(tmp_path, "--identity-dir", str(first.config_dir))
    assert result.returncode == 0, result.stderr
    copied = tmp_path / "config" / "identity.key"
    assert copied.read_bytes() == before == source.read_bytes()
    assert _mode_is_private(copied)
    _key, raw_id = load_identity(source)
    assert parse_node_id(result.stdout.split("node ID: ")[1].split()[0]) == raw_id
    assert (tmp_path / "storage" / "storage-dir-verification").read_text().strip() == (
        node_id_text(raw_id)
    )


def test_an_existing_identity_keeps_its_own_storage_dir(tmp_path: Path) -> None:
    # A node moved to a new config dir (a reinstall): its pieces are its own.
    first = setup_node(tmp_path / "a")
    claim = (first.storage_dir / "storage-dir-verification").read_bytes()
    result = _setup(tmp_path, "--identity-dir", str(first.config_dir), storage=first.storage_dir)
    assert result.returncode == 0, result.stderr
    assert (first.storage_dir / "storage-dir-verification").read_bytes() == claim


def test_an_identity_already_in_the_config_dir_is_used_in_place(tmp_path: Path) -> None:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    pem, raw_id = new_identity_pem()
    (config_dir / "identity.key").write_bytes(pem)
    (config_dir / "identity.key").chmod(0o644)
    result = _setup(tmp_path, "--identity-dir", str(config_dir))
    assert result.returncode == 0, result.stderr
    assert (config_dir / "identity.key").read_bytes() == pem
    assert _mode_is_private(config_dir / "identity.key")
    assert load_config(config_dir).storage_dir == tmp_path / "storage"
    assert node_id_text(raw_id) in result.stdout
    # ...once: a second setup there finds the node set up.
    _refused(_setup(tmp_path, "--identity-dir", str(config_dir)), "set up already")


def test_identity_dir_refusals_write_nothing(tmp_path: Path) -> None:
    _refused(_setup(tmp_path, "--identity-dir", str(tmp_path / "none")), "--identity-dir:")
    (tmp_path / "empty").mkdir()
    _refused(_setup(tmp_path, "--identity-dir", str(tmp_path / "empty")), "no identity.key")
    _nothing_written(tmp_path)


def test_an_identity_dir_never_overwrites_the_config_dirs_identity(tmp_path: Path) -> None:
    first = setup_node(tmp_path / "a")
    assert _setup(tmp_path).returncode == 0
    before = (tmp_path / "config" / "identity.key").read_bytes()
    result = _setup(tmp_path, "--identity-dir", str(first.config_dir), storage=tmp_path / "other")
    _refused(result, "identity already exists")
    assert (tmp_path / "config" / "identity.key").read_bytes() == before


@pytest.mark.parametrize(
    ("operator", "needle"),
    [
        (f'wallet = "{WALLET[:-1]}D"', "[operator] wallet: the wallet address"),
        ('email = "nobody"', "[operator] email"),
        ("wallet = 7", "[operator] wallet must be a string"),
    ],
)
def test_run_holds_an_edited_operator_table_to_the_same_checks(
    tmp_path: Path, operator: str, needle: str
) -> None:
    setup = setup_node(tmp_path)
    path = setup.config_dir / "config.toml"
    path.write_text(path.read_text() + f"\n[operator]\n{operator}\n")
    result = run_once(DEV_NODE, "run", "--config-dir", str(setup.config_dir))
    assert result.returncode == exitcodes.NOT_CONFIGURED, result.stderr
    assert needle in result.stderr
