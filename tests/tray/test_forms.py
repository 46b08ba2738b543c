"""The wizard's and Settings' fields checked before anything is sent (node_settings'
validators), the pause and quiet-window inputs, and the administrator-rights message."""

from __future__ import annotations

import shlex
from datetime import datetime
from pathlib import Path

import pytest

from nodekeeper.tray import admin, forms, pause
from storagenode.identity import new_identity_pem

WALLET = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"


def identity_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "identity"
    folder.mkdir()
    (folder / "identity.key").write_bytes(new_identity_pem()[0])
    return folder


def good(tmp_path: Path) -> dict[str, str]:
    return {
        "identity_dir": str(identity_dir(tmp_path)),
        "wallet": WALLET,
        "email": "op@example.com",
        "external_address": "203.0.113.7:28967",
        "storage_dir": str(tmp_path / "pieces"),
        "allocation": "1 MB",
    }


def never(_host: str, _timeout: float) -> bool:
    raise AssertionError("no lookup expected")


def test_good_wizard_input_has_no_errors(tmp_path: Path) -> None:
    looked_up = []

    def resolves(host: str, timeout: float) -> bool:
        looked_up.append((host, timeout))
        return True

    assert forms.check(good(tmp_path), forms.WIZARD_FIELDS, resolves) == {}
    assert looked_up == [("203.0.113.7", forms.RESOLVE_SECONDS)]


def test_every_bad_field_gets_its_own_error(tmp_path: Path) -> None:
    bad = {
        "identity_dir": str(tmp_path / "missing"),
        "wallet": "0x123",
        "email": "op at example",
        "external_address": "http://node.example:28967",
        "storage_dir": str(tmp_path / "pieces"),
        "allocation": "lots",
    }
    errors = forms.check(bad, forms.WIZARD_FIELDS, never)
    assert set(errors) == set(forms.WIZARD_FIELDS) - {"storage_dir"}
    assert "does not exist" in errors["identity_dir"]
    assert "has 3 characters after 0x instead of 40" in errors["wallet"]
    assert "has a space in it" in errors["email"]
    assert "no http://" in errors["external_address"]
    assert errors["allocation"].startswith("the allocation:")


def test_empty_fields_say_what_to_fill_in(tmp_path: Path) -> None:
    errors = forms.check({}, forms.WIZARD_FIELDS, never)
    assert set(errors) == {"identity_dir", "wallet", "email", "external_address", "storage_dir"}
    only_folder = forms.check({"storage_dir": str(tmp_path)}, ("storage_dir", "allocation"), never)
    assert only_folder == {"allocation": 'write how much space the node may use, e.g. "500 GB"'}


def test_a_name_that_does_not_resolve_is_refused(tmp_path: Path) -> None:
    values = {**good(tmp_path), "external_address": "nowhere.invalid:28967"}
    errors = forms.check(values, forms.WIZARD_FIELDS, lambda _h, _t: False)
    assert errors == {
        "external_address": "the external address's host nowhere.invalid does not resolve: "
        "check the spelling, or use the public IP address"
    }


def test_an_allocation_larger_than_the_disk_is_an_allocation_error(tmp_path: Path) -> None:
    values = {**good(tmp_path), "allocation": "1000 PB"}
    errors = forms.check(values, forms.WIZARD_FIELDS, lambda _h, _t: True)
    assert list(errors) == ["allocation"]
    assert "does not fit" in errors["allocation"]


def test_settings_send_only_what_changed_and_check_storage_with_allocation() -> None:
    current = {"wallet": WALLET, "email": None, "external_address": "a.example:1",
               "storage_dir": "/srv/pieces", "allocation": 500_000_000_000}  # fmt: skip
    shown = {f: forms.shown_value(f, current.get(f)) for f in forms.SETTINGS_FIELDS}
    assert shown["allocation"] == "500 GB"
    assert shown["email"] == ""
    assert forms.changed(shown, current) == {}
    edited = {**shown, "email": " op@example.com ", "allocation": "600 GB"}
    changes = forms.changed(edited, current)
    assert changes == {"email": "op@example.com", "allocation": "600 GB"}
    assert forms.fields_to_check(changes) == ("email", "storage_dir", "allocation")
    assert forms.fields_to_check({"wallet": WALLET}) == ("wallet",)


NOW = datetime(2026, 5, 1, 12, 30)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-05-02 08:00", datetime(2026, 5, 2, 8, 0)),
        ("  2026-05-02   08:00 ", datetime(2026, 5, 2, 8, 0)),
        ("13:00", datetime(2026, 5, 1, 13, 0)),
        ("08:00", datetime(2026, 5, 2, 8, 0)),  # passed today: tomorrow
        ("12:30", datetime(2026, 5, 2, 12, 30)),  # now is not the future
    ],
)
def test_pause_until(text: str, expected: datetime) -> None:
    assert pause.parse_until(text, NOW) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "write when updates may start again"),
        ("tomorrow", "'tomorrow' is not a time"),
        ("25:00", "'25:00' is not a time"),
        ("2026-04-30 08:00", "2026-04-30 08:00 has passed"),
    ],
)
def test_pause_until_refusals(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pause.parse_until(text, NOW)


def test_quiet_window_is_checked_by_the_updaters_parser() -> None:
    assert pause.check_window(" 18:00 - 23:00 ") == "18:00-23:00"
    assert pause.check_window("7:05-6:00") == "07:05-06:00"
    assert pause.check_window("  ") is None
    with pytest.raises(ValueError, match="write it as HH:MM-HH:MM"):
        pause.check_window("evenings")
    with pytest.raises(ValueError, match="starts when it ends"):
        pause.check_window("10:00-10:00")


def test_the_admin_message_names_the_token_and_the_sudo_command() -> None:
    config = Path("/etc/nodekeeper/keeper.toml")
    token = Path("/var/lib/nodekeeper/state/control.token")
    text = admin.needs_admin_message("restart", config, token)
    assert text.startswith("To restart the node this window needs administrator rights")
    assert str(token) in text
    assert text.endswith("run: sudo " + shlex.join(
        ["nodekeeper", "node", "restart", "--config", str(config)]))  # fmt: skip
    pause = admin.needs_admin_message("pause", None, None, ["--until", "2026-12-04T08:00"])
    assert pause.endswith("run: sudo nodekeeper update pause --until 2026-12-04T08:00")
    other = admin.needs_admin_message("settings", None, None)
    assert other.endswith("start the window as one: sudo -E nodekeeper tray")
    assert admin.run_elevated(["node", "restart"]) == (
        "elevation through UAC exists only on Windows"
    )
