"""The control API's parts one by one (decision 069): the token file, the client's error
mapping against the real status server on loopback, the actions' refusals in-process
with a real supervisor, the setup command line, the CLI's words. The whole keeper:
test_control_api.py."""

from __future__ import annotations

import asyncio
import os
import re
import stat
from argparse import Namespace
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from nodekeeper.keeper import control_token, node_config_file, node_setup
from nodekeeper.keeper.api import serve_status
from nodekeeper.keeper.client import (
    NEEDS_ADMIN,
    Busy,
    KeeperClient,
    KeeperClientError,
    KeeperUnreachable,
    NotAuthorized,
    Rejected,
    read_token,
)
from nodekeeper.keeper.control import HELD, NOTHING_INSTALLED, UPDATING, Control
from nodekeeper.keeper.control_commands import describe, pause_until
from nodekeeper.keeper.supervisor import Supervisor
from nodekeeper.platform import current_platform
from storagenode.control import dashboard_html
from tests.keeper.conftest import fast_config, free_port, program

pytestmark = pytest.mark.timeout(60)
TOKEN = "t" * 43
WALLET = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"


# -- the token file --------------------------------------------------------------------------


def test_the_token_is_made_once_0600_and_kept(tmp_path: Path) -> None:
    state = tmp_path / "state"
    token = control_token.ensure_token(state)
    path = state / control_token.TOKEN_FILE
    assert control_token.usable(token) and len(token) == 43
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert control_token.ensure_token(state) == token  # not rotated at a restart
    assert read_token(path) == token
    assert list(state.iterdir()) == [path]  # no temp file left


@pytest.mark.parametrize(
    ("content", "mode"),
    [(b"", 0o600), (b"short", 0o600), (b"\xff" * 50, 0o600), ("k" * 43, 0o644), ("k" * 43, 0o640)],
)
def test_a_damaged_or_readable_token_is_replaced(
    tmp_path: Path, content: bytes | str, mode: int, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / control_token.TOKEN_FILE
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    path.chmod(mode)
    token = control_token.ensure_token(tmp_path)
    assert token != content and control_token.usable(token)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "writing a new one" in caplog.text


def test_only_the_exact_bearer_token_matches() -> None:
    assert control_token.matches(TOKEN, f"Bearer {TOKEN}")
    assert control_token.matches(TOKEN, f"bearer   {TOKEN} ")
    for wrong in (None, "", TOKEN, f"Basic {TOKEN}", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}",
                  "Bearer ", "Bearer é"):  # fmt: skip
        assert not control_token.matches(TOKEN, wrong), wrong
    assert control_token.too_open(0o644) and control_token.too_open(0o602)
    assert not control_token.too_open(0o600) and not control_token.too_open(0o400)


def test_the_windows_acl_is_system_and_administrators_only() -> None:
    assert control_token.windows_entries() == [
        ("S-1-5-18", "full", 0),
        ("S-1-5-32-544", "full", 0),
    ]


def test_read_token_is_none_when_it_cannot_be_read(tmp_path: Path) -> None:
    assert read_token(tmp_path / "absent") is None
    assert read_token(tmp_path) is None  # a directory
    (tmp_path / "empty").write_text("  \n")
    assert read_token(tmp_path / "empty") is None


# -- the API and the client, in-process ------------------------------------------------------


class Served:
    def __init__(self, control: Control | None, snapshot: dict[str, Any]) -> None:
        self.control = control
        self.snapshot = snapshot
        self.port = free_port()


async def _serving(served: Served, body: Callable[[str], Awaitable[Any]]) -> Any:
    server = await serve_status(
        "127.0.0.1", served.port, lambda: served.snapshot, control=served.control
    )
    try:
        return await body(f"http://127.0.0.1:{served.port}")
    finally:
        server.close()
        await server.wait_closed()


def _control(tmp_path: Path, **options: Any) -> tuple[Control, Supervisor]:
    config = fast_config(tmp_path, program("pulse_node.py", free_port()))
    supervisor = Supervisor(config, current_platform())
    return Control(config, supervisor, TOKEN, **options), supervisor


def test_the_client_says_each_refusal_in_words(tmp_path: Path) -> None:
    async def scenario(url: str) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        run = asyncio.to_thread
        seen["status"] = await run(KeeperClient(url).status)
        for token in (None, "wrong" * 9):
            try:
                await run(KeeperClient(url, token).pause_updates, None)
            except NotAuthorized as exc:
                seen[f"auth {token is None}"] = str(exc)
        try:
            await run(KeeperClient(url, TOKEN).pause_updates, None)
        except KeeperClientError as exc:
            seen["no updates"] = str(exc)
        for window in ("18:00", 7):
            try:
                await run(KeeperClient(url, TOKEN).set_quiet_window, window)  # type: ignore[arg-type]
            except KeeperClientError as exc:
                seen[f"window {window}"] = exc
        try:
            await run(KeeperClient(url, TOKEN).restart)
        except Busy as exc:
            seen["busy"] = str(exc)
        seen["settings"] = await run(KeeperClient(url).settings)
        return seen

    control, supervisor = _control(tmp_path)
    supervisor.set_command(None)
    seen = asyncio.run(_serving(Served(control, {"state": "stopped"}), scenario))
    assert seen["status"] == {"state": "stopped"}
    assert seen["auth True"] == NEEDS_ADMIN
    assert "refused the control token" in seen["auth False"]
    assert "no [update] table" in seen["no updates"]
    assert seen["busy"] == NOTHING_INSTALLED
    assert seen["settings"]["needs_setup"] is True
    assert set(seen["settings"]["values"]) == set(node_config_file.FIELDS)


def test_unreachable_and_unknown_paths_say_where(tmp_path: Path) -> None:
    port = free_port()
    with pytest.raises(KeeperUnreachable, match=f"no keeper answering at http://127.0.0.1:{port}"):
        KeeperClient(f"http://127.0.0.1:{port}", timeout=2).status()
    with pytest.raises(KeeperUnreachable, match=re.escape("http://127.0.0.1:PORT")):
        KeeperClient("notaurl").status()

    async def older(url: str) -> str:
        try:
            await asyncio.to_thread(KeeperClient(url, TOKEN).restart)
        except KeeperClientError as exc:
            return str(exc)
        return "no error"

    said = asyncio.run(_serving(Served(None, {}), older))  # a keeper without actions
    assert "does not offer POST /node/restart" in said


def test_the_quiet_window_is_checked_and_saved(tmp_path: Path) -> None:
    from nodekeeper.keeper.maintenance_store import MaintenanceStore

    store = MaintenanceStore(tmp_path / "state", None, lambda: datetime(2026, 12, 3, 9).timestamp())
    control, _ = _control(tmp_path, maintenance=store)

    async def scenario(url: str) -> dict[str, Any]:
        client = KeeperClient(url, TOKEN)
        seen: dict[str, Any] = {}
        for bad in ("18:00", 7, "18:00-18:00"):
            try:
                await asyncio.to_thread(client.set_quiet_window, bad)  # type: ignore[arg-type]
            except Rejected as exc:
                seen[str(bad)] = exc.errors
        seen["set"] = await asyncio.to_thread(client.set_quiet_window, "08:30-10:00")
        try:
            await asyncio.to_thread(client.pause_updates, 5.0)
        except Rejected as exc:
            seen["past"] = exc.errors
        return seen

    seen = asyncio.run(_serving(Served(control, {}), scenario))
    assert "HH:MM-HH:MM" in seen["18:00"]["window"]
    assert "null to clear" in seen["7"]["window"]
    assert "pause them until" in seen["18:00-18:00"]["window"]
    assert seen["set"] == {
        "quiet_window": "08:30-10:00",
        "paused_until": None,
        "verdict": {"allowed": False, "why": "held by the quiet window 08:30-10:00 until 10:00"},
    }
    assert "has passed" in seen["past"]["until"]


def test_restart_waits_for_no_update_and_needs_something_installed(tmp_path: Path) -> None:
    async def scenario() -> list[tuple[int, dict[str, Any]]]:
        lock = asyncio.Lock()
        control, supervisor = _control(tmp_path, update_lock=lock)
        answers = []
        async with lock:  # an update being carried out
            answers.append(await control.restart({}))
            answers.append(await control.apply_settings({"email": "x@example.com"}))
        supervisor.hold("the storage directory /mnt/x is gone", "Plug the disk in again.")
        answers.append(await control.restart({}))
        supervisor.release()
        supervisor.set_command(None)
        answers.append(await control.restart({}))
        assert not lock.locked()
        return answers

    updating, settings, held, nothing = asyncio.run(scenario())
    assert held == (
        409,
        {"error": f"{HELD}: the storage directory /mnt/x is gone. Plug the disk in again."},
    )
    assert updating == (409, {"error": UPDATING})
    # Not set up is said before the update: there is nothing to change yet.
    assert settings[0] == 409 and "not set up yet" in settings[1]["error"]
    assert nothing == (409, {"error": NOTHING_INSTALLED})


# -- settings and setup, pure ----------------------------------------------------------------


def test_settings_values_show_what_is_set() -> None:
    document = {
        "storage_dir": "/srv/pieces",
        "allocated_bytes": 1_500_000_000,
        "operator": {"wallet": WALLET},
    }
    assert node_config_file.values(document) == {
        "wallet": WALLET,
        "email": None,
        "external_address": None,
        "storage_dir": "/srv/pieces",
        "allocation": "1.5 GB",
    }
    assert node_config_file.values({"allocated_bytes": 1_234_567_891})["allocation"] == (
        "1234567891 B"
    )
    assert node_config_file.values(None)["wallet"] is None


def test_the_allocation_counts_the_nodes_own_pieces_as_free(tmp_path: Path) -> None:
    import shutil

    free = shutil.disk_usage(tmp_path).free
    document = {"storage_dir": str(tmp_path), "allocated_bytes": 1000}
    wanted = free  # more than fits beside the margin, unless the pieces count
    with pytest.raises(node_config_file.SettingsRefused):
        node_config_file.plan_change(tmp_path, document, {"allocation": wanted})
    change = node_config_file.plan_change(tmp_path, document, {"allocation": wanted}, free)
    assert change.applied == ["allocation"] and change.document["allocated_bytes"] == wanted


def _plan(**changes: Any) -> node_setup.SetupPlan:
    base = {
        "wallet": WALLET,
        "email": "op@example.com",
        "external_address": "node.example.com:30000",
        "storage_dir": Path("/srv/pieces"),
        "allocation": "1 TB",
        "identity_dir": None,
    }
    return node_setup.SetupPlan(**{**base, **changes})


def test_setup_runs_the_nodes_own_command_with_setup_for_run(tmp_path: Path) -> None:
    command = ["/opt/py", "-m", "storagenode", "run", "--config-dir", "/x"]
    argv = node_setup.setup_argv(command, tmp_path, _plan(), "http://127.0.0.1:7790/pulse")
    assert argv is not None
    assert argv[:4] == ["/opt/py", "-m", "storagenode", "setup"]
    flags = dict(zip(argv[4::2], argv[5::2], strict=True))
    assert flags == {
        "--config-dir": str(tmp_path),
        "--storage-dir": "/srv/pieces",
        "--allocated": "1 TB",
        "--listen": "0.0.0.0:30000",
        "--wallet": WALLET,
        "--email": "op@example.com",
        "--external-address": "node.example.com:30000",
        "--control-listen": "127.0.0.1:7790",
    }
    remote = node_setup.setup_argv(
        command, tmp_path, _plan(identity_dir=Path("/id")), "http://10.0.0.1:1/pulse"
    )
    assert remote is not None and "--control-listen" not in remote
    assert remote[-2:] == ["--identity-dir", "/id"]
    assert node_setup.setup_argv(["mynode", "serve"], tmp_path, _plan(), "") is None


@pytest.mark.parametrize(
    ("output", "errors"),
    [
        ('{"level": "ERROR", "msg": "setup refused: --storage-dir: /x is full"}',
         {"storage_dir": "/x is full"}),
        ("storagenode: error: --wallet: bad", {"wallet": "bad"}),
        ("something else broke", {"setup": "something else broke"}),
        ("", {"setup": "setup failed without saying why"}),
    ],
)  # fmt: skip
def test_a_refused_setup_names_the_field(output: str, errors: dict[str, str]) -> None:
    assert node_setup.refusal(output) == errors


def test_setup_checks_every_field_at_once(tmp_path: Path) -> None:
    with pytest.raises(node_setup.SetupRefused) as refused:
        node_setup.check({"wallet": 5, "identity_dir": str(tmp_path), "extra": 1})
    assert set(refused.value.errors) == {
        "wallet", "email", "external_address", "storage_dir", "allocation", "identity_dir",
        "extra",
    }  # fmt: skip
    plan = node_setup.check(
        {
            "wallet": WALLET,
            "email": "op@example.com",
            "external_address": "Node.Example.com:28967",
            "storage_dir": str(tmp_path / "pieces"),
            "allocation": "1 MB",
        }
    )
    assert plan.external_address == "node.example.com:28967"
    assert plan.storage_dir == tmp_path / "pieces" and plan.identity_dir is None


# -- the CLI's words, the dashboard ------------------------------------------------------------


def test_pause_flags_become_an_end_time() -> None:
    now = 1_000_000.0
    args = Namespace(resume=False, duration="2h", until=None)
    assert pause_until(args, now) == now + 7200
    assert pause_until(Namespace(resume=True, duration=None, until=None), now) is None
    at = pause_until(Namespace(resume=False, duration=None, until="2026-12-04T08:00"), now)
    assert at == datetime(2026, 12, 4, 8, 0).timestamp()
    for bad in (Namespace(resume=False, duration="soon", until=None),
                Namespace(resume=False, duration=None, until="tomorrow")):  # fmt: skip
        with pytest.raises(Exception, match=r"--for|--until"):
            pause_until(bad, now)


def test_the_maintenance_dict_in_words() -> None:
    paused = datetime(2026, 12, 4, 8, 0).timestamp()
    text = describe(
        {"quiet_window": "18:00-23:00", "paused_until": paused,
         "verdict": {"allowed": False, "why": "held: updates are paused until 2026-12-04 08:00"}}
    )  # fmt: skip
    assert text.splitlines() == [
        "quiet window: 18:00-23:00",
        "paused until: 2026-12-04 08:00",
        "now: held: updates are paused until 2026-12-04 08:00",
    ]
    free = describe({"quiet_window": None, "paused_until": None, "verdict": {"allowed": True}})
    assert free.splitlines() == ["quiet window: none", "not paused", "now: updates may start"]


def test_the_dashboard_escapes_what_it_shows() -> None:
    page = dashboard_html(
        {"node_id": "<script>x</script>", "version": "1.2.3", "used_bytes": 10,
         "allocated_bytes": 100, "uptime_seconds": 3725.0}
    ).decode()  # fmt: skip
    assert "<script>x" not in page and "&lt;script&gt;x&lt;/script&gt;" in page
    assert "1.2.3" in page and "10 of 100 bytes" in page and "1 h 2 min" in page


def test_the_installer_writes_the_dashboard_url() -> None:
    import tomllib

    from nodekeeper.service.install_actions import keeper_config_text

    written = tomllib.loads(keeper_config_text(Path("/rt"), "", None, 7790))
    assert written["node"]["dashboard_url"] == "http://127.0.0.1:7790/dashboard"
    assert tomllib.loads(keeper_config_text(Path("/rt"), ""))["node"]["dashboard_url"] == (
        "http://127.0.0.1:7778/dashboard"
    )


def test_a_durable_secret_is_never_readable_by_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The temp file holds the secret before it is renamed: its mode must already be
    0600 while it is written, not only after a chmod."""
    from nodekeeper import durable

    seen: list[int] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        seen.append(stat.S_IMODE(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(durable.os, "fsync", spy)
    durable.write_durably(tmp_path / "secret", b"s", mode=0o600)
    assert seen[0] == 0o600  # the file's own fsync, before the rename


def test_the_human_status_shows_a_set_window_or_pause() -> None:
    from nodekeeper.keeper.status_view import maintenance_rows

    assert maintenance_rows(None) == []
    assert maintenance_rows({"quiet_window": None, "paused_until": None, "verdict": {}}) == []
    held = "held by the quiet window 18:00-23:00 until 23:00"
    rows = maintenance_rows(
        {"quiet_window": "18:00-23:00", "paused_until": None,
         "verdict": {"allowed": False, "why": held}}
    )  # fmt: skip
    assert rows == [("quiet window", "18:00-23:00 (local time)"), ("updates now", held)]
