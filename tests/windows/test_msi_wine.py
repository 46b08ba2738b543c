"""The MSI, installed for real by Windows Installer under Wine (decision 066).

Built by installer/build.py from this tree (twice: this version and a higher one, for the
upgrade). Each test installs into the run's Wine prefix and removes everything again; a
lock makes them take turns (tests/windows/msi.py). What Wine cannot show, and a real
Windows must, is listed in decision 066.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.windows.msi import MsiSession, build_msis, exclusive, status, wait
from tests.windows.wine import WineRuntime

pytestmark = [pytest.mark.wine, pytest.mark.timeout(600)]

RUNNING, STOPPED = 4, 1
NEEDS_SETUP = "needs-setup"


@pytest.fixture(scope="module")
def msis(wine: WineRuntime) -> dict[str, Path]:
    return build_msis(Path(wine.env["WINEPREFIX"]).parent / "msi")


@pytest.fixture
def msi(wine: WineRuntime, msis: dict[str, Path], tmp_path: Path) -> Iterator[MsiSession]:
    with exclusive(Path(wine.env["WINEPREFIX"]).parent):
        session = MsiSession(wine, tmp_path)
        session.remove_everything(msis["current"])
        try:
            yield session
        finally:
            session.remove_everything(msis["next"])


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_install_runs_the_service_until_stopped_upgraded_and_removed(
    msi: MsiSession, msis: dict[str, Path]
) -> None:
    """An interactive-style install (no properties): the service starts at install, says
    RUNNING once the keeper answers, and the node waits in needs-setup for the wizard."""
    installed = msi.install(msis["current"])
    assert installed.code == 0, installed.log[-3000:]
    service = msi.wait_state(RUNNING, 60)
    config = service["config"]
    assert config["start_type"] == 2  # SERVICE_AUTO_START: at boot, nobody logged in
    assert config["dependencies"] == ["Tcpip", "Dnscache"], config
    assert config["account"] == "LocalSystem"
    # Quoted by the install action: Windows Installer left the path with spaces bare.
    assert config["binary"].startswith('"C:\\Program Files\\nodekeeper\\runtime\\python.exe" ')
    assert config["binary"].endswith(
        '-m nodekeeper.service.windows_host --config "C:\\ProgramData\\nodekeeper\\keeper.toml"'
    )
    # Wine stores the pre-shutdown timeout but neither the failure actions nor the flag
    # (ChangeServiceConfig2 answers ERROR_INVALID_LEVEL): tried, and said so.
    assert config["preshutdown_ms"] == 60_000, config
    launcher_log = (msi.data / "logs" / "launcher.log").read_text()
    assert "keeper answers: service running" in launcher_log
    seen = wait(lambda: (s := status()) and s["state"] == NEEDS_SETUP and s, 60, "needs-setup")
    assert seen["pid"] is None or isinstance(seen["pid"], int)
    keeper_config = (msi.data / "keeper.toml").read_text()
    assert "[update]" not in keeper_config  # no SERVER_URL: the runtime's own node

    # sc stop: the launcher stops the keeper (its stop event), nothing is left running.
    service_pid = service["pid"]
    stopped = msi.wine.run_exe("sc", "stop", "nodekeeper")
    assert stopped.returncode == 0, stopped.output
    msi.wait_state(STOPPED, 90)
    assert msi.alive([service_pid]) == []
    assert status() is None
    assert "stopping keeper" in (msi.data / "logs" / "launcher.log").read_text()

    # Upgrade: a higher version replaces the program and keeps the config and state.
    before = digest(msi.data / "keeper.toml")
    upgraded = msi.install(msis["next"])
    assert upgraded.code == 0, upgraded.log[-3000:]
    msi.wait_state(RUNNING, 60)
    assert digest(msi.data / "keeper.toml") == before
    assert "kept C:\\ProgramData\\nodekeeper\\keeper.toml" in upgraded.log

    # Uninstall: service and program gone, the data kept.
    removed = msi.uninstall(msis["next"])
    assert removed.code == 0, removed.log[-3000:]
    assert "missing" in msi.service()
    assert not msi.program_files.exists() or not any(msi.program_files.rglob("*.py"))
    assert (msi.data / "keeper.toml").exists()
