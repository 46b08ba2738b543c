"""`nodekeeper service unit|install|uninstall` from the command line: what `unit` prints is
what `install --root` writes, systemd's checker accepts it, and every bad input is refused
in one line that names it, before anything changes."""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from pathlib import Path

import pytest

from nodekeeper.cli.errors import CommandError
from nodekeeper.cli.root import build_parser
from nodekeeper.service.commands import refuse_off_linux, require_root, unit_spec
from nodekeeper.service.systemd import UNIT_DIR, UNIT_NAME, lookup_account
from tests.service.test_systemd import one, systemd_analyze_verify
from tests.support import run_main

STORAGE = "/srv/storagenode"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "keeper.toml"
    path.write_text('data_dir = "/var/lib/nodekeeper"\n\n[stop]\ntimeout_seconds = 40\n')
    return path


def test_unit_prints_what_install_writes_under_a_root_dir(tmp_path: Path, config: Path) -> None:
    printed = run_main(["service", "unit", "--config", str(config), "--storage-dir", STORAGE])
    assert (printed.returncode, printed.stderr) == (0, "")
    text = printed.stdout
    assert one(text, "Service", "ExecStart") == (
        f"{sys.executable} -m nodekeeper.launcher --config {config} --stop-timeout-seconds 55 "
        "--delegated-cgroup"
    )
    assert one(text, "Service", "ReadWritePaths") == f"/var/lib/nodekeeper {STORAGE}"
    account = lookup_account("nodekeeper")
    assert one(text, "Service", "Group") == (account.group if account else "nodekeeper")
    # The config is under /tmp here, so the service must see the real /tmp.
    assert one(text, "Service", "PrivateTmp") == "no"

    root = tmp_path / "image"
    root.mkdir()
    installed = run_main(
        ["service", "install", "--root", str(root), "--config", str(config),
         "--storage-dir", STORAGE]
    )  # fmt: skip
    assert (installed.returncode, installed.stderr) == (0, ""), installed
    unit = root / "etc" / "systemd" / "system" / UNIT_NAME
    assert unit.read_text() == text
    assert f"wrote {unit}" in installed.stdout and "not enabled (--root)" in installed.stdout
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == [
        "etc", "etc/systemd", "etc/systemd/system", f"etc/systemd/system/{UNIT_NAME}"
    ]  # fmt: skip
    verified = systemd_analyze_verify(tmp_path, text)
    assert (verified.returncode, verified.stderr) == (0, "")

    removed = run_main(["service", "uninstall", "--root", str(root)])
    assert removed.returncode == 0 and not unit.exists()
    assert f"kept the user nodekeeper, /var/lib/nodekeeper, {STORAGE}" in removed.stdout


def _unit_file_state() -> object:
    path = UNIT_DIR / UNIT_NAME
    return path.read_bytes() if path.exists() else None


def test_install_and_uninstall_need_root_and_change_nothing_without_it(config: Path) -> None:
    args = build_parser().parse_args(["service", "install", "--config", str(config)])
    with pytest.raises(CommandError, match=r"run it as root, e\.g\. `sudo nodekeeper service"):
        require_root(args, euid=1000)
    require_root(args, euid=0)
    with_root = build_parser().parse_args(["service", "uninstall", "--root", "/srv/image"])
    require_root(with_root, euid=1000)  # only that directory is written

    # And through the real command, as a user who is not root.
    before = _unit_file_state()
    argv = ["service", "install", "--config", str(config), "--storage-dir", STORAGE]
    if os.geteuid() == 0:
        # Only the effective uid: the real one stays 0, so seteuid(0) takes it back.
        os.seteuid(65534)
        try:
            result = run_main(argv)
        finally:
            os.seteuid(0)
    else:
        result = run_main(argv)
    assert result.returncode == 1, result
    (line,) = result.stderr.strip().splitlines()
    assert "`nodekeeper service install` changes the system" in line
    assert "sudo" in line and "nothing was changed" in line
    assert _unit_file_state() == before


@pytest.mark.parametrize(
    ("content", "name", "needle"),
    [
        (None, "keeper.toml", "no such file"),
        ('data_dir = "/var/lib/nodekeeper"\n', "relative", "must be an absolute path"),
        ("[stop]\ntimeout_seconds = 40\n", "keeper.toml", "set data_dir"),
        ('data_dir = "/var/lib/nodekeeper"\n[stop]\ntimeout = 4\n', "keeper.toml", "unknown key"),
        ('data_dir = "/tmp/nk"\n', "keeper.toml", "temporary directories are emptied"),
        ('data_dir = "/srv/node keeper"\n', "keeper.toml", "contains a space"),
    ],
    ids=["missing", "relative path", "no data_dir", "unknown key", "data in /tmp", "space"],
)
def test_a_bad_config_is_refused_in_one_line_and_nothing_is_written(
    tmp_path: Path, content: str | None, name: str, needle: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    monkeypatch.chdir(tmp_path)
    given = "relative" if name == "relative" else str(path)
    root = tmp_path / "image"
    root.mkdir()
    for command in (["unit"], ["install", "--root", str(root)]):
        result = run_main(["service", *command, "--config", given])
        assert result.returncode == 2, result
        (line,) = result.stderr.strip().splitlines()
        assert needle in line and given in line, line
        assert result.stdout == ""
    assert list(root.iterdir()) == []


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--user", "Node Keeper"], "a system user name is lower-case"),
        (["--storage-dir", "pieces"], "--storage-dir pieces: must be an absolute path"),
        (["--storage-dir", "/var/tmp/pieces"], "temporary directories are emptied"),
        (["--python", "/no/such/python"], "--python /no/such/python: no such file"),
        (["--python", "{tmp}/python"], "not an executable program"),
    ],
)
def test_other_bad_inputs_are_refused_in_one_line(
    config: Path, tmp_path: Path, flags: list[str], needle: str
) -> None:
    (tmp_path / "python").write_text("#!/bin/sh\n")  # 0644
    flags = [f.replace("{tmp}", str(tmp_path)) for f in flags]
    result = run_main(["service", "unit", "--config", str(config), *flags])
    assert result.returncode == 2, result
    (line,) = result.stderr.strip().splitlines()
    assert needle in line, line


def test_paths_are_normalized_for_systemd(tmp_path: Path) -> None:
    """systemd ignores a ReadWritePaths= entry with `..` in it ("not normalized"), which
    would leave the data dir read-only: every path is normalized first."""
    config = tmp_path / "keeper.toml"
    config.write_text('data_dir = "/var/lib/../lib/nodekeeper"\n')
    result = run_main(
        ["service", "unit", "--config", f"{tmp_path}/./../{tmp_path.name}/keeper.toml",
         "--storage-dir", "/srv/x/../storagenode"]
    )  # fmt: skip
    assert result.returncode == 0, result
    assert one(result.stdout, "Service", "ReadWritePaths") == f"/var/lib/nodekeeper {STORAGE}"
    assert f"--config {config} " in one(result.stdout, "Service", "ExecStart")


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["service", *argv])


def test_a_real_install_needs_the_storage_dirs_to_exist(config: Path) -> None:
    """Packagers print or write units for another machine; installing on this one needs
    the disks mounted: a missing ReadWritePaths= entry fails every start of the unit."""
    # Not under /tmp: data there is refused for another reason.
    missing = f"/srv/nodekeeper-test-not-mounted-{uuid.uuid4().hex}"
    args = _args("install", "--config", str(config), "--storage-dir", missing)
    with pytest.raises(CommandError, match="does not exist; mount the disk"):
        unit_spec(args, installing=True)
    assert unit_spec(args, installing=False).storage_dirs == (Path(missing),)


def test_off_linux_the_commands_say_where_the_service_comes_from() -> None:
    with pytest.raises(CommandError, match="installed by the MSI installer"):
        refuse_off_linux("win32")
    with pytest.raises(CommandError, match="needs Linux with systemd"):
        refuse_off_linux("darwin")
    refuse_off_linux("linux")
