"""The Windows behaviour itself, in the Windows runtime under Wine: a log held open by
another handle refuses rename with WinError 32 (Wine implements share modes) and nothing
is lost; CRITICAL records reach the Event Log handler. The holder is a second handle in
the same process: share modes are per handle, so it is the same refusal another
program's handle causes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.windows.wine import WineRuntime, windows_path

pytestmark = pytest.mark.wine

SCRIPT = Path(__file__).parent / "winside" / "held_open.py"


@pytest.fixture(scope="module")
def seen(wine: WineRuntime, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One run of the Windows-side script (a `wine python.exe` costs about 2 s)."""
    done = wine.run_script(SCRIPT, windows_path(tmp_path_factory.mktemp("wine")), timeout=180)
    assert done.returncode == 0, done.output
    return done.result()


def test_rotation_survives_a_handle_without_share_delete(seen: dict[str, Any]) -> None:
    assert seen["winerror"] == 32  # the obstacle is the real sharing violation
    assert seen["archived_while_held"] == []
    assert seen["failures_while_held"] > 0
    assert seen["size_while_held"] == 400 * 98  # kept appending past the 4 KiB limit
    assert seen["archives_after"] > 0  # rotated once the handle was closed
    assert seen["lines_ok"], seen
    assert seen["index_ok"], seen


def test_critical_events_reach_the_event_log_handler(seen: dict[str, Any]) -> None:
    """Wine's event log only records the call, so this checks what can be checked: the
    handler is the standard library's NTEventLogHandler on pywin32, set to CRITICAL, and
    emitting through it does not fail."""
    assert seen["event_handlers"] == ["NTEventLogHandler"]
    assert seen["pywin32_loaded"] is True
    assert seen["emit_failures"] == []
    assert seen["keeper_log_has_it"] is True
