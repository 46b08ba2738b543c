"""The systemd unit (docs/decisions/064-systemd-unit.md): systemd's own checker accepts it,
each restart, stop and hardening setting has the value the decision gives it, the
launcher takes its command line, and install / uninstall carry out their steps on real
files through a command runner that records instead of running useradd and systemctl."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from nodekeeper.launcher.cli import build_parser as launcher_parser
from nodekeeper.launcher.cli import settings_from_args
from nodekeeper.service.systemd import (
    UNIT_NAME,
    Account,
    Host,
    HostCommandError,
    UnitInputError,
    UnitSpec,
    blocked_for,
    install,
    render_unit,
    run_command,
    uninstall,
    useradd_argv,
)

SPEC = UnitSpec(
    # systemd-analyze verify checks that ExecStart's program exists and is executable.
    python=Path(sys.executable),
    config=Path("/etc/nodekeeper/keeper.toml"),
    data_dir=Path("/var/lib/nodekeeper"),
    node_config_dir=Path("/var/lib/nodekeeper/storagenode"),
    storage_dirs=(Path("/srv/storagenode"),),
    user="nodekeeper",
    group="nodekeeper",
    node_stop_seconds=30.0,
    version="1.2.3",
)


def sections(text: str) -> dict[str, dict[str, list[str]]]:
    """The unit as INI: section → key → values in order (systemd allows repeated keys)."""
    out: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("["):
            current = out.setdefault(line.strip("[]"), {})
            continue
        assert current is not None, f"a setting before any section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not a Key=value line: {line!r}"
        current.setdefault(key, []).append(value)
    return out


def one(text: str, section: str, key: str) -> str:
    values = sections(text)[section].get(key)
    assert values is not None and len(values) == 1, f"[{section}] {key}: {values}"
    return values[0]


def systemd_analyze_verify(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze not found: apt-get install systemd (scripts/system-packages.txt)"
    path = tmp_path / UNIT_NAME
    path.write_text(text)
    return subprocess.run(
        [tool, "verify", "--man=no", str(path)], capture_output=True, text=True, timeout=60
    )


# -- systemd's checker ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param(SPEC, id="default"),
        pytest.param(
            replace(SPEC, storage_dirs=(Path("/home/alice/storj"), Path("/mnt/disk2/storj"))),
            id="storage under /home, two disks",
        ),
        pytest.param(
            replace(SPEC, node_config_dir=Path("/etc/storagenode"), node_stop_seconds=0.5),
            id="node config outside data_dir, fractional stop",
        ),
    ],
)
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path, spec: UnitSpec) -> None:
    result = systemd_analyze_verify(tmp_path, render_unit(spec))
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_systemd_analyze_verify_would_catch_a_bad_setting(tmp_path: Path) -> None:
    """The check above can fail: verify reports a misspelt value and an unknown key on
    stderr (with exit 0, which is why stderr must be empty above)."""
    text = render_unit(SPEC).replace("KillMode=mixed", "KillMode=mixd\nWatchdogSek=1")
    result = systemd_analyze_verify(tmp_path, text)
    assert "kill mode" in result.stderr and "WatchdogSek" in result.stderr, result


# -- the settings ----------------------------------------------------------------------------


def test_it_runs_the_launcher_as_the_dedicated_user() -> None:
    text = render_unit(SPEC)
    assert one(text, "Service", "ExecStart") == (
        f"{sys.executable} -m nodekeeper.launcher --config /etc/nodekeeper/keeper.toml "
        "--stop-timeout-seconds 45 --delegated-cgroup"
    )
    assert one(text, "Service", "Type") == "exec"
    assert one(text, "Service", "User") == "nodekeeper"
    assert one(text, "Service", "Group") == "nodekeeper"
    assert one(text, "Install", "WantedBy") == "multi-user.target"
    # Nothing in the keeper or the launcher calls sd_notify: no watchdog to feed.
    assert not {"WatchdogSec", "NotifyAccess"} & sections(text)["Service"].keys()


def test_it_restarts_always_slowly_and_never_gives_up() -> None:
    text = render_unit(SPEC)
    assert one(text, "Service", "Restart") == "always"
    assert one(text, "Service", "RestartSec") == "5s"
    assert one(text, "Unit", "StartLimitIntervalSec") == "0"


def test_sigterm_goes_to_the_launcher_and_sigkill_to_what_is_left() -> None:
    text = render_unit(SPEC)
    assert one(text, "Service", "KillMode") == "mixed"
    assert one(text, "Service", "TimeoutStopSec") == "60s"
    # The keeper makes the node's cgroup below the unit's; it must be able to write there.
    assert one(text, "Service", "Delegate") == "memory cpu"
    assert "ProtectControlGroups" not in sections(text)["Service"]


@pytest.mark.parametrize(
    ("node_stop", "launcher_stop", "unit_stop"),
    [(30.0, "45", "60s"), (100.0, "115", "130s"), (0.5, "15.5", "31s")],
)
def test_each_stop_timeout_outlasts_the_one_below_it(
    node_stop: float, launcher_stop: str, unit_stop: str
) -> None:
    """The keeper stops the node within [stop] timeout_seconds, the launcher waits for the
    keeper 15 s longer, systemd for the launcher 15 s longer than that."""
    text = render_unit(replace(SPEC, node_stop_seconds=node_stop))
    argv = one(text, "Service", "ExecStart").split()
    assert argv[argv.index("--stop-timeout-seconds") + 1] == launcher_stop
    assert one(text, "Service", "TimeoutStopSec") == unit_stop
    assert node_stop < float(launcher_stop) < float(unit_stop.removesuffix("s"))


def test_hardening() -> None:
    # An interpreter outside /tmp, wherever this checkout lives (a clone in /tmp gets
    # PrivateTmp=no, by design: test_a_config_under_tmp_keeps_the_real_tmp_visible).
    spec = replace(SPEC, python=Path("/opt/nodekeeper/venv/bin/python"))
    service = sections(render_unit(spec))["Service"]
    expected = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ReadWritePaths": "/var/lib/nodekeeper /srv/storagenode",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "ProtectClock": "yes",
        "ProtectHostname": "yes",
        "RestrictSUIDSGID": "yes",
        "RestrictRealtime": "yes",
        "RestrictNamespaces": "yes",
        "LockPersonality": "yes",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6 AF_NETLINK",
        "CapabilityBoundingSet": "",
    }
    assert {key: service.get(key) for key in expected} == {k: [v] for k, v in expected.items()}


def test_the_node_never_starts_on_an_unmounted_disk() -> None:
    text = render_unit(replace(SPEC, storage_dirs=(Path("/mnt/a/storj"), Path("/mnt/b"))))
    assert one(text, "Unit", "RequiresMountsFor") == "/var/lib/nodekeeper /mnt/a/storj /mnt/b"


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param(replace(SPEC, storage_dirs=(Path("/home/alice/storj"),)), id="storage"),
        pytest.param(replace(SPEC, data_dir=Path("/root/nodekeeper")), id="data_dir"),
        pytest.param(replace(SPEC, python=Path("/home/alice/venv/bin/python")), id="python"),
        pytest.param(
            replace(SPEC, read_paths=(Path("/root/.pyenv/versions/3.11.7/bin/python3.11"),)),
            id="where a venv's python points",
        ),
        pytest.param(replace(SPEC, config=Path("/run/user/1000/keeper.toml")), id="config"),
    ],
)
def test_a_path_under_home_is_read_only_there_and_writable_if_it_must_be(spec: UnitSpec) -> None:
    """ProtectHome=yes would hide it, and ReadWritePaths= cannot be nested inside an
    inaccessible tree, only inside a read-only one (systemd.exec(5))."""
    text = render_unit(spec)
    assert one(text, "Service", "ProtectHome") == "read-only"
    written = one(text, "Service", "ReadWritePaths").split()
    assert str(spec.data_dir) in written
    assert all(str(p) in written for p in spec.storage_dirs)


def test_a_config_under_tmp_keeps_the_real_tmp_visible() -> None:
    text = render_unit(replace(SPEC, config=Path("/tmp/keeper.toml")))
    assert one(text, "Service", "PrivateTmp") == "no"


def test_each_writable_path_is_listed_once() -> None:
    inside = replace(SPEC, storage_dirs=(Path("/var/lib/nodekeeper/pieces"), Path("/srv/a")))
    assert one(render_unit(inside), "Service", "ReadWritePaths") == "/var/lib/nodekeeper /srv/a"
    outside = replace(SPEC, node_config_dir=Path("/etc/storagenode"), storage_dirs=())
    assert one(render_unit(outside), "Service", "ReadWritePaths") == (
        "/var/lib/nodekeeper /etc/storagenode"
    )


@pytest.mark.parametrize(
    ("storage", "why"),
    [
        ("/srv/my disk", "space"),
        ("/srv/100%", "%"),
        ("/srv/$HOME", "$"),
        ('/srv/"x"', "quote"),
        ("srv/relative", "absolute"),
        ("/srv/../var/pieces", "normalized"),
    ],
)
def test_a_path_systemd_would_misread_is_refused(storage: str, why: str) -> None:
    with pytest.raises(UnitInputError, match=why):
        render_unit(replace(SPEC, storage_dirs=(Path(storage),)))


def test_the_launcher_takes_the_command_line(tmp_path: Path) -> None:
    """ExecStart's flags are the launcher's own: its parser reads them, and it would run
    with the config and the stop timeout the unit gives it."""
    config = tmp_path / "keeper.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n\n[stop]\ntimeout_seconds = 50\n')
    spec = replace(SPEC, config=config, node_stop_seconds=50.0)
    argv = one(render_unit(spec), "Service", "ExecStart").split()
    assert argv[:3] == [sys.executable, "-m", "nodekeeper.launcher"]
    settings = settings_from_args(launcher_parser().parse_args(argv[3:]))
    assert settings.config == config
    assert settings.data_dir == tmp_path / "data"
    assert settings.stop_timeout_seconds == 65.0
    assert settings.delegated_cgroup is True  # moves into a leaf: the node's limits work


# -- install and uninstall ---------------------------------------------------------------------


class Machine:
    """What install needs of a machine besides files: a command runner that records the
    commands, and an account table that useradd adds to (owned by whoever runs the test,
    so that the real chown of a new directory works without root)."""

    def __init__(self, *users: str) -> None:
        self.commands: list[list[str]] = []
        self.users = {name: Account(os.getuid(), os.getgid(), name) for name in users}

    def run(self, argv: Sequence[str]) -> None:
        self.commands.append(list(argv))
        if argv[0] == "useradd":
            self.users[argv[-1]] = Account(os.getuid(), os.getgid(), argv[-1])

    def lookup(self, name: str) -> Account | None:
        return self.users.get(name)

    def host(self, unit_dir: Path, booted: bool = True) -> Host:
        return Host(unit_dir=unit_dir, booted=booted, run=self.run, lookup=self.lookup)


def local_spec(tmp_path: Path) -> UnitSpec:
    (tmp_path / "pieces").mkdir()
    (tmp_path / "keeper.toml").write_text(f'data_dir = "{tmp_path / "data"}"\n')
    return replace(
        SPEC,
        config=tmp_path / "keeper.toml",
        data_dir=tmp_path / "data",
        node_config_dir=tmp_path / "data" / "storagenode",
        storage_dirs=(tmp_path / "pieces",),
    )


SYSTEMCTL_RELOAD = ["systemctl", "daemon-reload"]


def test_install_makes_the_user_and_data_dir_writes_the_unit_and_starts_it(
    tmp_path: Path,
) -> None:
    spec = local_spec(tmp_path)
    machine = Machine()
    units = tmp_path / "etc" / "systemd" / "system"
    report = install(spec, machine.host(units))
    assert machine.commands == [
        useradd_argv(spec),
        SYSTEMCTL_RELOAD,
        ["systemctl", "enable", "--now", UNIT_NAME],
    ]
    assert useradd_argv(spec)[:3] == ["useradd", "--system", "--user-group"]
    unit = units / UNIT_NAME
    assert unit.read_text() == render_unit(spec)
    assert stat.S_IMODE(unit.stat().st_mode) == 0o644
    for directory in spec.owned_dirs:
        assert directory.is_dir() and stat.S_IMODE(directory.stat().st_mode) == 0o750
        assert directory.stat().st_uid == os.getuid()
    assert report.warnings == []
    assert f"wrote {unit}" in report.done and "created the system user nodekeeper" in report.done


def test_install_again_restarts_only_for_a_changed_unit(tmp_path: Path) -> None:
    spec = local_spec(tmp_path)
    machine = Machine("nodekeeper")
    units = tmp_path / "units"
    install(spec, machine.host(units))
    machine.commands.clear()
    report = install(spec, machine.host(units))
    assert machine.commands == [SYSTEMCTL_RELOAD, ["systemctl", "enable", "--now", UNIT_NAME]]
    assert f"{units / UNIT_NAME} is up to date" in report.done

    machine.commands.clear()
    changed = replace(spec, node_stop_seconds=90.0)
    install(changed, machine.host(units))
    assert machine.commands == [
        SYSTEMCTL_RELOAD,
        ["systemctl", "enable", UNIT_NAME],
        ["systemctl", "restart", UNIT_NAME],
    ]
    assert (units / UNIT_NAME).read_text() == render_unit(changed)


def test_install_without_systemd_running_writes_the_unit_and_says_what_to_run(
    tmp_path: Path,
) -> None:
    spec = local_spec(tmp_path)
    machine = Machine("nodekeeper")
    report = install(spec, machine.host(tmp_path / "units", booted=False))
    assert machine.commands == []
    assert (tmp_path / "units" / UNIT_NAME).is_file()
    (warning,) = report.warnings
    assert "systemd is not running here" in warning
    assert f"systemctl daemon-reload && systemctl enable --now {UNIT_NAME}" in warning


def test_install_under_a_root_dir_only_writes_the_unit(tmp_path: Path) -> None:
    spec = local_spec(tmp_path)
    machine = Machine()
    host = replace(machine.host(tmp_path / "units"), manage=False)
    report = install(spec, host)
    assert machine.commands == []
    assert not spec.data_dir.exists()
    assert (tmp_path / "units" / UNIT_NAME).read_text() == render_unit(spec)
    assert any("not enabled (--root)" in line for line in report.done)


def test_install_names_directories_the_user_cannot_write(tmp_path: Path) -> None:
    spec = local_spec(tmp_path)
    for directory in spec.owned_dirs:
        directory.mkdir(parents=True, exist_ok=True)
    machine = Machine()
    machine.users["nodekeeper"] = Account(os.getuid() + 4242, os.getgid(), "nodekeeper")
    report = install(spec, machine.host(tmp_path / "units"))
    owned = [w for w in report.warnings if " belongs to " in w]
    warned = {w.split(" belongs to ")[0] for w in owned}
    assert warned == {str(spec.data_dir), str(spec.node_config_dir), str(spec.storage_dirs[0])}
    assert f"chown -R nodekeeper:nodekeeper {spec.storage_dirs[0]}" in owned[-1]


def test_install_warns_when_the_user_cannot_reach_the_interpreter_or_the_config(
    tmp_path: Path,
) -> None:
    """As with a venv under /root (0700): every start of the unit would fail."""
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o700)
    python = locked / "python"
    python.write_text("#!/bin/sh\n")
    python.chmod(0o755)
    spec = replace(local_spec(tmp_path), python=python, config=locked / "keeper.toml")
    spec.config.write_text("")
    machine = Machine()
    machine.users["nodekeeper"] = Account(os.getuid() + 4242, os.getgid() + 4242, "nodekeeper")
    report = install(spec, machine.host(tmp_path / "units"))
    reach = [w for w in report.warnings if "cannot reach" in w]
    assert len(reach) == 2, report.warnings
    assert reach[0].startswith(f"nodekeeper cannot reach {python} (")
    assert "a venv in /opt" in reach[0]
    assert reach[1].startswith(f"nodekeeper cannot reach {spec.config} (")
    assert f"chgrp nodekeeper {spec.config}" in reach[1]
    # A program every user may run is fine, and the check looks at each directory.
    stranger = Account(os.getuid() + 4242, os.getgid() + 4242, "nodekeeper")
    assert blocked_for(Path("/usr/bin/env"), stranger, 1) is None
    blocked = blocked_for(locked / "keeper.toml", stranger, 4)
    assert blocked is not None and locked.is_relative_to(blocked)  # pytest's base is 0700


def test_a_path_the_unit_cannot_carry_changes_nothing(tmp_path: Path) -> None:
    spec = replace(local_spec(tmp_path), storage_dirs=(tmp_path / "my pieces",))
    machine = Machine()
    with pytest.raises(UnitInputError):
        install(spec, machine.host(tmp_path / "units"))
    assert machine.commands == []
    assert not (tmp_path / "units").exists() and not spec.data_dir.exists()


def test_uninstall_stops_disables_and_removes_the_unit_and_keeps_the_rest(
    tmp_path: Path,
) -> None:
    spec = local_spec(tmp_path)
    machine = Machine()
    units = tmp_path / "units"
    install(spec, machine.host(units))
    machine.commands.clear()
    report = uninstall(machine.host(units))
    assert machine.commands == [["systemctl", "disable", "--now", UNIT_NAME], SYSTEMCTL_RELOAD]
    assert not (units / UNIT_NAME).exists()
    assert spec.data_dir.is_dir() and "nodekeeper" in machine.users
    assert report.done[-1] == (
        f"kept the user nodekeeper, {spec.data_dir}, {spec.storage_dirs[0]}: "
        "remove them by hand once the node is gone"
    )

    again = uninstall(machine.host(units))
    assert again.done == [f"{units / UNIT_NAME} does not exist: nothing to uninstall"]


def test_a_failing_start_says_the_unit_is_written_and_where_to_look(tmp_path: Path) -> None:
    spec = local_spec(tmp_path)
    machine = Machine("nodekeeper")

    def run(argv: Sequence[str]) -> None:
        machine.run(argv)
        if argv[:2] == ["systemctl", "enable"]:
            raise HostCommandError("`systemctl enable --now nodekeeper.service` failed (exit 1)")

    host = replace(machine.host(tmp_path / "units"), run=run)
    with pytest.raises(HostCommandError) as failed:
        install(spec, host)
    assert f"the unit is written to {tmp_path / 'units' / UNIT_NAME}" in str(failed.value)
    assert "journalctl -u nodekeeper.service" in str(failed.value)
    assert (tmp_path / "units" / UNIT_NAME).is_file()


def test_the_command_runner_says_what_failed() -> None:
    run_command([sys.executable, "-c", "pass"])
    with pytest.raises(HostCommandError, match=r"failed \(exit 3\): no way"):
        run_command([sys.executable, "-c", "import sys; print('no way', file=sys.stderr); exit(3)"])
    with pytest.raises(HostCommandError, match="cannot run /no/such/useradd"):
        run_command(["/no/such/useradd"])
