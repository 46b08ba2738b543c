"""The tray icon's state from the keeper's status (pure): each state, and which wins."""

from __future__ import annotations

from typing import Any

import pytest

from nodekeeper.tray.icon_state import icon_state


def status(**fields: Any) -> dict[str, Any]:
    return {"state": "running", "version": "1.4.0", "update": {}, **fields}


@pytest.mark.parametrize(
    ("data", "unread", "kind", "says"),
    [
        (None, 0, "stopped", "not answering"),
        (status(state="stopped", next_start_in=None), 0, "stopped", "stopped"),
        (status(), 0, "running", "node 1.4.0 running"),
        (status(update={"step": "downloaded", "target": "1.5.0"}), 0, "updating", "to 1.5.0"),
        (status(state="starting"), 0, "updating", "is starting"),
        (status(state="needs-setup"), 0, "attention", "needs setting up"),
        (status(state="crash-loop", crash_loop=True), 0, "attention", "keeps failing"),
        (status(state="hung"), 0, "attention", "hangs"),
        (status(update={"held": {"version": "1.5.0"}}), 0, "attention", "held"),
        (status(firewall={"last": {"status": "blocked"}}), 0, "attention", "firewall"),
        (status(), 1, "attention", "1 unread problem"),
        (status(), 3, "attention", "3 unread problems"),
        # Attention wins over updating: an update in flight does not hide a problem.
        (status(update={"step": "downloaded"}), 2, "attention", "2 unread"),
        # A stopped node that the keeper will start again is not "stopped".
        (status(state="stopped", next_start_in=4.0), 0, "updating", "restarts in 4 s"),
    ],
)
def test_the_state_the_operator_must_know_about_wins(
    data: dict[str, Any] | None, unread: int, kind: str, says: str
) -> None:
    found = icon_state(data, unread)
    assert found.kind == kind and says in found.tooltip
    assert found.colour.startswith("#")
