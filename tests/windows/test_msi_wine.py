"""The MSI, installed for real by Windows Installer under Wine (decision 066).

Built by installer/build.py from this tree (twice: this version and a higher one, for the
upgrade). Each test installs into a Wine prefix of its own with its own ports, so they run
side by side (tests/windows/msi.py). What Wine cannot show, and a real Windows must, is
listed in decision 066.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nodekeeper.launcher import statefile
from nodekeeper.launcher.decide import State
from nodekeeper.launcher.protocol import state_dir, versions_dir
from nodekeeper.service.acl import ADMINISTRATORS, SYSTEM, USERS
from tests.selfupdate.keepers import build_keeper, install
from tests.support import free_port
from tests.windows.msi import MsiSession, build_msis, private_wine, wait
from tests.windows.pictures import wait_for_wizard
from tests.windows.wine import WineRuntime, windows_path
from tests.xdisplay import screenshot, window_names, xvfb

pytestmark = [pytest.mark.wine, pytest.mark.timeout(600)]

RUNNING, STOPPED = 4, 1
NEEDS_SETUP = "needs-setup"


@pytest.fixture(scope="module")
def msis(wine: WineRuntime) -> dict[str, Path]:
    return build_msis(Path(wine.env["WINEPREFIX"]).parent / "msi")


@pytest.fixture
def msi(msis: dict[str, Path], tmp_path: Path) -> Iterator[MsiSession]:
    with private_wine() as wine:
        yield MsiSession(wine, tmp_path)


def last_started(msi: MsiSession) -> str:
    """The keeper the service's launcher started last, as its log names it."""
    log = (msi.data / "logs" / "launcher.log").read_text()
    return re.findall(r"started keeper (.+?) \(pid", log)[-1]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_install_runs_the_service_until_stopped_upgraded_and_removed(
    msi: MsiSession, msis: dict[str, Path], tmp_path: Path
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
    seen = wait(lambda: (s := msi.status()) and s["state"] == NEEDS_SETUP and s, 60, "needs-setup")
    assert seen["pid"] is None or isinstance(seen["pid"], int)
    links = check_tray_entries(msi)
    check_the_run_value_starts_the_tray(msi, tmp_path)
    keeper_config = (msi.data / "keeper.toml").read_text()
    assert "[update]" not in keeper_config  # no SERVER_URL: the runtime's own node

    # sc stop: the launcher stops the keeper (its stop event), nothing is left running.
    service_pid = service["pid"]
    stopped = msi.wine.run_exe("sc", "stop", "nodekeeper")
    assert stopped.returncode == 0, stopped.output
    msi.wait_state(STOPPED, 90)
    assert msi.alive([service_pid]) == []
    assert msi.status() is None
    assert "stopping keeper" in (msi.data / "logs" / "launcher.log").read_text()

    # Upgrade: a higher version replaces the program and keeps the config and state. A
    # keeper that updated itself to a newer version than the installer's keeps running
    # (decision 066: the newer keeper wins, whichever way it came).
    install(build_keeper("good", "0.2.0", msi.work / "rel"), versions_dir(msi.data))
    statefile.save_state(state_dir(msi.data), State(current="0.2.0"))
    # A rotated root the keeper had learned into its metadata cache (decision 086).
    learned = state_dir(msi.data) / "tuf" / "root_history" / "2.root.json"
    learned.parent.mkdir(parents=True)
    learned.write_bytes((msis["tuf_metadata"] / "2.root.json").read_bytes())
    before = digest(msi.data / "keeper.toml")
    upgraded = msi.install(msis["next"])
    assert upgraded.code == 0, upgraded.log[-3000:]
    msi.wait_state(RUNNING, 60)
    assert digest(msi.data / "keeper.toml") == before
    assert "kept C:\\ProgramData\\nodekeeper\\keeper.toml" in upgraded.log
    assert last_started(msi) == "0.2.0"
    check_the_trusted_root(msi, msis, upgraded.log)
    assert learned.read_bytes() == (msis["tuf_metadata"] / "2.root.json").read_bytes()
    # The other order: the self-updated keeper is older than the installed one.
    assert msi.wine.run_exe("sc", "stop", "nodekeeper").returncode == 0
    msi.wait_state(STOPPED, 90)
    statefile.save_state(state_dir(msi.data), State(current="0.0.9"))
    assert msi.wine.run_exe("sc", "start", "nodekeeper").returncode == 0
    msi.wait_state(RUNNING, 60)
    launcher_log = (msi.data / "logs" / "launcher.log").read_text()
    assert "the installed keeper 0.1.0 is newer than the self-updated 0.0.9" in launcher_log
    assert last_started(msi) == "the runtime's keeper"

    # Uninstall: service and program gone, the data kept.
    removed = msi.uninstall(msis["next"])
    assert removed.code == 0, removed.log[-3000:]
    assert "missing" in msi.service()
    assert "nodekeeper install action: kept C:\\ProgramData\\nodekeeper" in removed.log
    assert not msi.program_files.exists() or not any(msi.program_files.rglob("*.py*"))
    assert not (msi.program_files / "trusted-root.json").exists()
    assert (msi.data / "keeper.toml").exists()
    # The Start menu entries and the tray's start at logon went with the program.
    assert [link for link in links if link.exists()] == []
    assert msi.tray_entries([])["run"] is None


def check_the_trusted_root(msi: MsiSession, msis: dict[str, Path], log: str) -> None:
    """The MSI built with a trusted root (decision 086) installs it beside the runtime,
    byte for byte, read-only (Wine keeps that attribute as a file without write bits); the
    install action is told where, and leaves a keeper.toml without [update] (nothing to
    verify) as it was. The runtime the MSI installed verifies it with its own tuf and
    cryptography (the win_amd64 wheel)."""
    root = msi.program_files / "trusted-root.json"
    assert root.read_bytes() == msis["trusted_root"].read_bytes()
    assert root.stat().st_mode & 0o222 == 0, oct(root.stat().st_mode)
    where = "C:\\Program Files\\nodekeeper\\trusted-root.json"
    assert f"trusted root {where}: keeper.toml: no [update] table" in log, log[-3000:]
    checked = msi.wine.run_exe(
        "C:\\Program Files\\nodekeeper\\runtime\\python.exe", "-c",
        "from tuf.api.metadata import Metadata\n"
        f"md = Metadata.from_file(r'{where}')\n"
        "md.signed.verify_delegate('root', md.signed_bytes, md.signatures)\n"
        "print('RESULT', md.signed.type, md.signed.version)\n",
    )  # fmt: skip
    assert checked.output.strip().endswith("RESULT root 1"), checked.output


def check_the_run_value_starts_the_tray(msi: MsiSession, out: Path) -> None:
    """What Windows runs at each logon, run here: the tray app claims its one instance per
    session (its loopback port in the user's runtime directory answers a second start's
    "raise") and opens its window (pythonw.exe: no console) on an 800x600 desktop (a Wine
    virtual desktop: the service started the prefix's own desktop without a display, at
    another size), on the Set up screen, since the installed keeper's node waits for
    setup. Once that screen is drawn whole (its fields and buttons: a picture that merely
    stops changing can be one taken halfway through Wine's first drawing of it) the screen
    is written as ``wine-tray-installed.png`` (and to $NODEKEEPER_SCREENSHOTS when set);
    the window, title bar included, is on it."""
    command = msi.tray_entries([])["run"]
    with xvfb(800, 600) as display:
        tray = msi.start_from_run_value(command, display, desktop=(800, 600))
        lock: list[Path] = []
        try:
            users = msi.prefix_path("C:\\users")
            ports = wait(lambda: list(users.glob("*/AppData/Local/Temp/nodekeeper/tray.port")),
                         60, "the tray app's instance port")  # fmt: skip
            port = int(ports[0].read_text().strip())
            lock.append(ports[0].with_name("tray.lock"))  # the app's Windows pid
            with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                conn.sendall(b"raise\n")
                assert conn.recv(16) == b"ok\n"
            wait(lambda: any("nodekeeper" in name for name in window_names(display)), 60,
                 "the tray app's window on the display")  # fmt: skip
            assert tray.poll() is None, "the tray app ended"
            shot = wait_for_wizard(display, 60, out / "wine-tray-not-drawn.png")
            save_screenshot(screenshot(display), out / "wine-tray-installed.png")
            x, y, width, height = shot.rect  # the whole window: Wine draws the frame here
            assert x >= 0 and y >= 0 and x + width <= 800 and y + height <= 600, shot.rect
        finally:
            pid = lock[0].read_text().strip() if lock and lock[0].exists() else ""
            if pid.isdigit():
                msi.kill(int(pid))  # the app, which would hold the program's files
            tray.kill()  # Wine's start.exe, waiting for the desktop
            tray.wait(30)


def save_screenshot(image: Any, path: Path) -> None:
    image.save(path)
    print(f"screenshot: {path}")
    extra = os.environ.get("NODEKEEPER_SCREENSHOTS")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        image.save(Path(extra) / path.name)


def check_tray_entries(msi: MsiSession) -> list[Path]:
    """The tray app's Start menu entries and its start at every logon (decision 072), each
    pointing at a file the install put there. Returns the menu's links."""
    # Wine keeps the all-users Start menu in its one user's profile.
    menu = "**/Start Menu/Programs/nodekeeper/*.lnk"
    links = [*msi.prefix_path("C:\\ProgramData").glob(menu),
             *msi.prefix_path("C:\\users").glob(menu)]  # fmt: skip
    entries = msi.tray_entries(links)
    by_name = {link.stem: entries["links"][windows_path(link)] for link in links}
    assert sorted(by_name) == ["nodekeeper", "nodekeeper dashboard", "nodekeeper logs"], links
    runtime = "C:\\Program Files\\nodekeeper\\runtime\\"
    pythonw = runtime + "pythonw.exe"
    assert by_name["nodekeeper"] == {"target": pythonw, "arguments": "-m nodekeeper tray",
                                     "working_directory": runtime}  # fmt: skip
    assert by_name["nodekeeper dashboard"]["target"] == pythonw
    assert by_name["nodekeeper dashboard"]["arguments"] == "-m nodekeeper tray --open-dashboard"
    assert by_name["nodekeeper logs"]["target"] == "C:\\ProgramData\\nodekeeper\\logs"
    assert msi.prefix_path(pythonw).is_file()
    assert msi.prefix_path(by_name["nodekeeper logs"]["target"]).is_dir()
    # At every user's logon: the machine's Run value, the same program and arguments.
    assert entries["run"] == f'"{pythonw}" -m nodekeeper tray'
    return links


WALLET = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"  # EIP-55's own example


def test_a_silent_install_with_properties_sets_the_node_up_and_runs_it(
    msi: MsiSession, msis: dict[str, Path]
) -> None:
    """What fleets and power users run: msiexec /qn with the node's settings. The node is
    set up by storagenode setup's own code, runs, and answers its pulse; its key and token
    are kept from users; killing the service leaves nothing running."""
    port = free_port()
    pieces = msi.prefix_path("C:\\nodekeeper-pieces")
    installed = msi.install(
        msis["current"],
        STORAGE_DIR="C:\\nodekeeper-pieces",
        ALLOCATION="1GB",
        WALLET=WALLET,
        EMAIL="operator@example.com",
        ADDRESS=f"node.example.com:{port}",
    )
    assert installed.code == 0, installed.log[-3000:]
    service = msi.wait_state(RUNNING, 60)
    healthy = wait(
        lambda: (s := msi.status()) and s["state"] == "running" and s, 90, "a running node"
    )
    assert msi.pulse(), "the node's control address answers /pulse"
    node_config = (msi.data / "storagenode" / "config.toml").read_text()
    assert f'listen = "0.0.0.0:{port}"' in node_config
    assert WALLET in node_config and "node.example.com" in node_config
    assert (pieces).is_dir()
    # The rules for the node's port, TCP and QUIC's UDP, scoped to the program that runs
    # the node (Wine has no firewall: that the commands ran is what can be seen here).
    for protocol in ("TCP", "UDP"):
        rule = f'name="nodekeeper storagenode {protocol} {port}"'
        added = [line for line in installed.log.splitlines()
                 if "firewall:" in line and rule in line and " add rule " in line]  # fmt: skip
        assert added and "python.exe" in added[0] and "(exit 0)" in added[0], installed.log[-3000:]

    # The data directory: readable by users; the node's key and token: not. Wine accepts
    # SetNamedSecurityInfo but reads back its own default (SYSTEM, the prefix's user,
    # Everyone read) for every file: here only the call and its arguments can be seen, in
    # the action's own lines; the rules themselves are tested in tests/service.
    assert (
        f"ACL of C:\\ProgramData\\nodekeeper: {SYSTEM} full, {ADMINISTRATORS} full, {USERS} read"
        in installed.log
    )
    assert (
        f"ACL of C:\\ProgramData\\nodekeeper\\storagenode: {SYSTEM} full, {ADMINISTRATORS} full"
        in installed.log
    )

    # sc stop with the node running: the keeper stops it through its shutdown URL (Wine
    # cannot deliver CTRL_BREAK), the node says so in its log, and nothing is left.
    record = json.loads((msi.data / "state" / "node.json").read_text())
    pids = [service["pid"], healthy["pid"], record["shim"]["pid"]]
    assert msi.wine.run_exe("sc", "stop", "nodekeeper").returncode == 0
    msi.wait_state(STOPPED, 90)
    wait(lambda: not msi.alive(pids), 30, f"{pids} to end after sc stop")
    node_log = (msi.data / "logs" / "storagenode.log").read_text()
    assert "node stopped" in node_log.rsplit("stopping", 1)[-1], node_log[-2000:]

    # Upgrade with the node set up: the new program runs the same node, with the same
    # identity, config and pieces.
    kept = {p: digest(p) for p in (msi.data / "storagenode" / "identity.key",
                                    msi.data / "storagenode" / "config.toml",
                                    msi.data / "keeper.toml")}  # fmt: skip
    upgraded = msi.install(msis["next"])
    assert upgraded.code == 0, upgraded.log[-3000:]
    service = msi.wait_state(RUNNING, 60)
    healthy = wait(lambda: (s := msi.status()) and s["state"] == "running" and s, 90, "the node")
    assert {p: digest(p) for p in kept} == kept
    assert (pieces).is_dir() and msi.pulse()

    # The service process killed outright: its job takes the keeper, the node's shim sees
    # the launcher gone and stops the node (Wine: killed after the stop timeout, since it
    # cannot deliver CTRL_BREAK). Wine's SCM has no recovery actions: it stays stopped.
    record = json.loads((msi.data / "state" / "node.json").read_text())
    pids = [service["pid"], healthy["pid"], record["shim"]["pid"]]
    msi.kill(service["pid"])
    wait(lambda: not msi.alive(pids), 60, f"{pids} to end")
    assert not msi.pulse()
    # Started again by hand (a real Windows restarts it after 1 s): the same node.
    assert msi.wine.run_exe("sc", "start", "nodekeeper").returncode == 0
    wait(lambda: (s := msi.status()) and s["state"] == "running", 90, "the node again")

    # Uninstall asking for the data to go: rules, service, program and data all gone.
    removed = msi.uninstall(msis["next"], REMOVE_DATA="1")
    assert removed.code == 0, removed.log[-3000:]
    for protocol in ("TCP", "UDP"):
        assert f'delete rule name="nodekeeper storagenode {protocol} {port}"' in removed.log
    assert "missing" in msi.service()
    assert not msi.data.exists()


def test_a_bad_property_fails_the_install_and_changes_nothing(
    msi: MsiSession, msis: dict[str, Path]
) -> None:
    bad_wallet = WALLET[:-1] + WALLET[-1].swapcase()  # one letter's case: checksum fails
    failed = msi.install(
        msis["current"],
        STORAGE_DIR="C:\\nodekeeper-pieces",
        ALLOCATION="1GB",
        WALLET=bad_wallet,
        EMAIL="operator@example.com",
        ADDRESS="node.example.com:28967",
    )
    assert failed.code != 0
    # The reason, where the operator finds it: on Windows in the verbose MSI log (the action
    # appends to [MsiLogFileLocation], a property Wine leaves unset), and always in the
    # system temp directory's nodekeeper-install.log, which the rollback leaves.
    temp = msi.windows("import json, tempfile\nresult = tempfile.gettempdir()")
    said = (msi.prefix_path(temp) / "nodekeeper-install.log").read_text()
    assert "FAILED: WALLET" in said and "checksum" in said, said[-2000:]
    assert "nothing was changed" in said
    assert "missing" in msi.service()
    assert not msi.program_files.exists() or not any(msi.program_files.rglob("*.exe"))
    assert not (msi.data / "keeper.toml").exists()
    assert not msi.prefix_path("C:\\nodekeeper-pieces").exists()
