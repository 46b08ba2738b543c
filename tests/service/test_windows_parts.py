"""The Windows service's pure parts, on Linux: its registration values, the install
action's decisions, the ACL rules. What they do on Windows: tests/windows/test_msi_wine.py."""

from __future__ import annotations

import tempfile
import tomllib
from pathlib import Path, PureWindowsPath

import pytest

from nodekeeper.node_settings import InvalidSetting
from nodekeeper.service import acl, install_actions, windows_config
from nodekeeper.service.install_actions import ActionFailed, Properties, plan_node

WALLET = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"


@pytest.mark.parametrize(
    ("image", "quoted"),
    [
        (r"C:\Program Files\nk\python.exe -m x --config C:\a b\k.toml",
         r'"C:\Program Files\nk\python.exe" -m x --config C:\a b\k.toml'),
        (r'"C:\Program Files\nk\python.exe" -m x', r'"C:\Program Files\nk\python.exe" -m x'),
        (r"C:\nk\python.exe -m x", r"C:\nk\python.exe -m x"),  # no space: nothing to guard
        ("no program here", "no program here"),
    ],
)  # fmt: skip
def test_the_service_path_is_quoted_when_it_has_spaces(image: str, quoted: str) -> None:
    assert windows_config.quoted_image_path(image) == quoted


def test_recovery_restarts_after_1_10_60_seconds_and_resets_after_a_day() -> None:
    recovery = windows_config.RECOVERY
    assert recovery.actions() == [(1, 1_000), (1, 10_000), (1, 60_000)]
    assert recovery.reset_seconds == 86_400 and recovery.failure_flag is True
    # Pre-shutdown outlasts the launcher's own stop chain.
    assert windows_config.preshutdown_ms(45.0) == 60_000


def test_the_keeper_config_runs_the_runtimes_node_unless_a_server_is_given() -> None:
    runtime = Path(PureWindowsPath(r"C:\Program Files\nodekeeper\runtime"))
    plain = tomllib.loads(install_actions.keeper_config_text(runtime, ""))
    assert plain["data_dir"] == "."
    assert plain["node"]["command"][0].endswith("python.exe")
    assert plain["node"]["command"][1:4] == ["-m", "storagenode", "run"]
    assert "update" not in plain
    managed = tomllib.loads(install_actions.keeper_config_text(runtime, "https://cp.example/"))
    assert managed["update"] == {"server": "https://cp.example/"}
    with pytest.raises(ActionFailed, match="quotes"):
        install_actions.keeper_config_text(runtime, "https://x/'")


def test_no_node_properties_leave_the_node_to_the_wizard() -> None:
    assert plan_node(Properties()) is None
    assert plan_node(Properties(server_url="https://cp.example/")) is None


def test_a_partial_node_setup_names_what_is_missing() -> None:
    with pytest.raises(ActionFailed, match="missing ALLOCATION, EMAIL, ADDRESS"):
        plan_node(Properties(storage_dir="/tmp", wallet=WALLET))
    with pytest.raises(ActionFailed, match="IDENTITY_DIR and PORT set up a node"):
        plan_node(Properties(port="28967"))


def test_the_node_properties_are_checked_by_the_shared_validators(tmp_path: Path) -> None:
    good = Properties(
        storage_dir=str(tmp_path / "pieces"), allocation="1MB", wallet=WALLET,
        email="op@example.com", address="node.example.com:28967",
    )  # fmt: skip
    plan = plan_node(good)
    assert plan is not None and plan.listen == "0.0.0.0:28967"
    assert plan.wallet == WALLET and plan.external_address == "node.example.com:28967"
    assert plan_node(Properties(**{**good.__dict__, "port": "30000"})).listen == "0.0.0.0:30000"
    bad = Properties(**{**good.__dict__, "wallet": WALLET[:-1] + WALLET[-1].swapcase()})
    with pytest.raises(InvalidSetting) as refused:
        plan_node(bad)
    assert refused.value.field == "wallet"


def test_a_failing_configure_leaves_nothing_and_says_which_property(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the action's log goes
    data = tmp_path / "ProgramData" / "nodekeeper"
    bad = Properties(
        storage_dir=str(tmp_path / "pieces"), allocation="1MB", wallet="0x123",
        email="op@example.com", address="node.example.com:28967",
    )  # fmt: skip
    with pytest.raises(ActionFailed, match=r"^WALLET: "):
        install_actions.configure(data, tmp_path / "runtime", bad)
    assert not data.exists()
    argv = ["configure", "--data-dir", f"{data} ", "--runtime", f"{tmp_path} ",
            "--wallet", "0x123 ", "--storage-dir", "x "]  # fmt: skip
    code = install_actions.main(argv)
    assert code == 1 and not data.exists()
    said = (tmp_path / install_actions.INSTALL_LOG).read_text()
    assert "FAILED: missing ALLOCATION, EMAIL, ADDRESS" in said and "nothing was changed" in said


def test_users_read_the_data_directory_but_never_the_nodes_key() -> None:
    rules = {rule.relative: dict(rule.grants) for rule in acl.RULES}
    assert rules[""] == {acl.SYSTEM: acl.FULL, acl.ADMINISTRATORS: acl.FULL, acl.USERS: acl.READ}
    assert rules["storagenode"] == {acl.SYSTEM: acl.FULL, acl.ADMINISTRATORS: acl.FULL}


def test_other_ports_than_the_defaults_reach_the_keepers_config() -> None:
    runtime = Path(PureWindowsPath(r"C:\nk\runtime"))
    plain = tomllib.loads(install_actions.keeper_config_text(runtime, ""))
    assert "status" not in plain and "probe" not in plain and "stop" not in plain
    text = install_actions.keeper_config_text(runtime, "", status_port=17779, control_port=17778)
    moved = tomllib.loads(text)
    assert moved["status"] == {"listen": "127.0.0.1:17779"}
    assert moved["probe"] == {"url": "http://127.0.0.1:17778/pulse"}
    assert moved["stop"] == {"shutdown_url": "http://127.0.0.1:17778/shutdown"}
    assert install_actions.ports(Properties(keeper_status="127.0.0.1:17779")) == (17779, None)
    assert install_actions.ports(Properties(control_port="17778")) == (None, 17778)
    with pytest.raises(ActionFailed, match="loopback only"):
        install_actions.ports(Properties(keeper_status="0.0.0.0:17779"))
    with pytest.raises(InvalidSetting):
        install_actions.ports(Properties(control_port="70000"))


# -- the trusted root the MSI ships (decision 086) -----------------------------------------

# As the action gets it on Windows; a Path of one name on Linux, which str() gives back.
ROOT = Path(r"C:\Program Files\nodekeeper\trusted-root.json")
ROOT_LINE = r"trusted_root = 'C:\Program Files\nodekeeper\trusted-root.json'"


def test_a_written_config_names_the_shipped_root_in_update(tmp_path: Path) -> None:
    runtime = Path(PureWindowsPath(r"C:\Program Files\nodekeeper\runtime"))
    text = install_actions.keeper_config_text(runtime, "https://cp.example/", trusted_root=ROOT)
    managed = tomllib.loads(text)
    assert managed["update"] == {"server": "https://cp.example/", "trusted_root": str(ROOT)}
    # The keeper loads what the installer writes (decision 085's key, and its check of the
    # root file at load), here with a real signed root where the MSI would put it.
    from nodekeeper.keeper.config import load_config
    from tests.windows.tuf_metadata import make_repository

    root = tmp_path / "trusted-root.json"
    root.write_bytes(make_repository(tmp_path / "metadata").root_v1)
    config_file = tmp_path / "keeper.toml"
    config_file.write_text(install_actions.keeper_config_text(tmp_path, "https://cp.example/",
                                                              trusted_root=root))  # fmt: skip
    assert load_config(config_file).trusted_root_path() == root


def test_without_a_server_the_root_is_named_in_a_comment_only() -> None:
    runtime = Path(PureWindowsPath(r"C:\Program Files\nodekeeper\runtime"))
    text = install_actions.keeper_config_text(runtime, "", trusted_root=ROOT)
    assert "update" not in tomllib.loads(text)  # [update] needs a server: none to give
    assert f"\n# {ROOT_LINE}\n" in text


MANAGED = (
    "data_dir = '.'\n\n[update]\nserver = 'https://cp.example/'\n\n[stop]\ntimeout_seconds = 5\n"
)


@pytest.mark.parametrize(
    ("kept", "added"),
    [
        (MANAGED, True),
        (MANAGED.replace("\n", "\r\n").replace("[update]", " [ update ]  # ours"), True),
        (MANAGED.replace("\n\n[stop]\ntimeout_seconds = 5\n", ""), True),  # [update] last
        ("data_dir = '.'\n", False),  # no [update]: nothing downloads, nothing to verify
        (MANAGED.replace("server =", "trusted_root = 'D:/mine.json'\nserver ="), False),
        ("update = { server = 'https://cp.example/' }\n", False),  # inline: not edited
        ("update.server = 'https://cp.example/'\n", False),  # dotted keys: not edited
        ("[update\n", False),  # not TOML
    ],
)  # fmt: skip
def test_an_upgrade_adds_the_root_to_a_kept_update_table_and_nothing_else(
    kept: str, added: bool
) -> None:
    edited, why = install_actions.add_trusted_root(kept, ROOT)
    if not added:
        assert edited is None and why
        return
    assert edited is not None, why
    before, after = tomllib.loads(kept), tomllib.loads(edited)
    assert after["update"].pop("trusted_root") == str(ROOT)
    assert after == before
    assert edited.count(ROOT_LINE) == 1
    if "\r\n" in kept:  # the file's own line ends
        assert edited.count("\n") == edited.count("\r\n")


def test_the_reasons_a_kept_config_is_not_edited() -> None:
    def why(text: str) -> str:
        return install_actions.add_trusted_root(text, ROOT)[1]

    assert why("data_dir = '.'\n") == "no [update] table: this keeper downloads nothing to verify"
    assert why("[update]\nserver = 'x'\ntrusted_root = 'D:/mine.json'\n") == (
        "kept its own trusted_root = 'D:/mine.json'"
    )
    assert why("update.server = 'x'\n").endswith(f"add `{ROOT_LINE}` to it by hand")
    assert why("[update\n").startswith("not TOML (")


def test_the_kept_file_is_edited_in_place_with_its_bom_and_line_ends(tmp_path: Path) -> None:
    config = tmp_path / "keeper.toml"
    config.write_bytes(b"\xef\xbb\xbf" + MANAGED.replace("\n", "\r\n").encode())
    said = install_actions.point_at_trusted_root(config, ROOT)
    assert said == f"trusted root {ROOT}: keeper.toml: added `{ROOT_LINE}` to its [update] table"
    raw = config.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and b"\r\n" + ROOT_LINE.encode() + b"\r\n" in raw
    assert raw.count(b"\n") == raw.count(b"\r\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keeper.toml"]  # no .new left
    again = install_actions.point_at_trusted_root(config, ROOT)
    assert again.endswith(f"kept its own trusted_root = {str(ROOT)!r}")


def test_an_msi_whose_root_is_missing_fails_before_writing_anything(tmp_path: Path) -> None:
    data = tmp_path / "ProgramData" / "nodekeeper"
    with pytest.raises(ActionFailed, match=r"ships a trusted root, but .* is not there: repair"):
        install_actions.configure(data, tmp_path / "runtime", Properties(), tmp_path / "none.json")
    assert not data.exists()


def test_no_user_may_write_the_metadata_cache() -> None:
    """<data dir>\\state\\tuf (decision 085's cache, rotated roots included) has no rule of
    its own: it inherits the data directory's, where users only read."""
    covering = [rule for rule in acl.RULES if "state/tuf".startswith(rule.relative)]
    assert [rule.relative for rule in covering] == [""]
    assert dict(covering[0].grants)[acl.USERS] == acl.READ
