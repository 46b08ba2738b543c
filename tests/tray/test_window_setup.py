"""The first-run wizard end to end: a real keeper (`nodekeeper run`) whose reference node
is not set up (needs-setup), the window that shows the wizard by itself, fields typed key
by key and the button clicked; bad input shows every error next to its field and sends
nothing; good input goes to ``POST /setup`` with the control token, the keeper runs the
node's setup and starts it, and the window switches to the node's screens.

Its screenshots (the wizard with errors, the wizard filled in) are what ``make
screenshots`` publishes as wizard-errors.png and set-up.png.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodekeeper.tray import forms
from nodekeeper.tray.run import build
from nodekeeper.tray.shots import grab
from storagenode.identity import new_identity_pem, node_id_text
from tests.keeper.test_keeper_process import status_now
from tests.support import free_port
from tests.tray.conftest import (
    WALLET,
    KeeperStack,
    click,
    pump_until,
    sizes_masked,
    type_into,
)
from tests.tray.test_window import check_png, publish

pytestmark = [pytest.mark.timeout(120), pytest.mark.e2e]


@pytest.fixture
def unset(short_root: Path, no_proxies: None) -> Iterator[KeeperStack]:
    """A keeper whose node has an empty config dir: the node exits "not set up" and the
    keeper waits in needs-setup. Its own recheck is an hour away, so only the wizard's
    setup can start the node within the test."""
    node_dir = short_root / "node"
    node_dir.mkdir()
    made = KeeperStack(short_root, (node_dir, free_port()), node={"setup_recheck_seconds": 3600.0})
    try:
        yield made
    finally:
        made.stop()


def test_the_wizard_sets_up_a_node_in_needs_setup_and_the_window_switches_to_it(
    short_root: Path, tk_root: tk.Tk, unset: KeeperStack
) -> None:
    unset.start(state="needs-setup")
    node_dir = short_root / "node"
    app = build(
        tk_root, unset.config, unset.config_path, short_root / "last-seen.json",
        real_tray=False, poll_ms=250,
    )  # fmt: skip
    assert app.client.token is not None  # root reads the keeper's control token
    wizard = app.wizard
    pump_until(
        tk_root,
        lambda: app.notebook.select() == str(wizard.frame),
        30,
        "the wizard shown by itself",
    )
    assert app.status is not None and app.status["state"] == "needs-setup"

    # Bad input: every error next to its field; nothing sent, the node still not set up.
    bad = {
        "identity_dir": str(short_root / "no-such-folder"),
        "wallet": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD",  # checksum broken
        "email": "op@@example.com",
        "external_address": "node.example.com",  # no port
        "storage_dir": str(short_root / "pieces"),
        "allocation": "1000 PB",
    }
    for field, text in bad.items():
        type_into(wizard.entries[field], text)
    click(wizard.submit)
    pump_until(
        tk_root, lambda: "nothing was sent" in str(wizard.message.cget("text")), 20, "the errors"
    )
    expected = forms.check(bad, forms.WIZARD_FIELDS)
    assert set(expected) == set(forms.WIZARD_FIELDS) - {"storage_dir"}
    for field in forms.WIZARD_FIELDS:
        shown = sizes_masked(str(wizard.errors[field].cget("text")))
        assert shown == sizes_masked(expected.get(field, "")), field
    assert status_now(unset.port)["state"] == "needs-setup"  # type: ignore[index]
    assert not (node_dir / "config.toml").exists()
    shots = [short_root / "shots" / "wizard-errors.png", short_root / "shots" / "set-up.png"]
    shots[0].parent.mkdir()
    grab(tk_root).save(shots[0])

    # Good input: a real identity folder, a storage folder with room for the allocation.
    identity = short_root / "identity"
    identity.mkdir()
    pem, node_id = new_identity_pem()
    (identity / "identity.key").write_bytes(pem)
    public_port = free_port()
    good = {
        "identity_dir": str(identity),
        "wallet": WALLET,
        "email": "operator@example.com",
        "external_address": f"127.0.0.1:{public_port}",
        "storage_dir": str(short_root / "pieces"),
        "allocation": "10 MB",
    }
    for field, text in good.items():
        type_into(wizard.entries[field], text)
    # Each edited field's old error went with the edit; the values show from their start.
    assert all(str(label.cget("text")) == "" for label in wizard.errors.values())
    assert wizard.entries["wallet"].xview()[0] == 0.0
    grab(tk_root).save(shots[1])
    click(wizard.submit)
    pump_until(
        tk_root,
        lambda: str(wizard.message.cget("text")) == "the node is set up: the keeper starts it now",
        60,
        f"the setup answered (the window says: {wizard.message.cget('text')!r})",
    )
    assert all(str(label.cget("text")) == "" for label in wizard.errors.values())  # still

    # The keeper started the node (a real process, with the identity given) and the
    # window left the wizard for the node's screens.
    pump_until(
        tk_root,
        lambda: (
            (app.status or {}).get("state") == "running"
            and app.notebook.tab(wizard.frame, "state") == "hidden"
        ),
        60,
        "the node running and the wizard gone",
    )
    assert app.notebook.select() == str(app.status_screen.frame)
    pid = app.status["pid"]  # type: ignore[index]
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert b"run" in cmdline and str(node_dir).encode() in cmdline, cmdline
    pulse = app.status["last_pulse"]["data"]  # type: ignore[index]
    assert pulse["node_id"] == node_id_text(node_id)
    assert (node_dir / "config.toml").is_file()
    settings = app.settings_screen
    pump_until(
        tk_root,
        lambda: settings.entries["wallet"].get() == WALLET,
        10,
        "the Settings screen filled from the keeper",
    )
    assert settings.entries["external_address"].get() == f"127.0.0.1:{public_port}"

    for path in shots:
        check_png(path)
        print(path)
    publish(shots)
