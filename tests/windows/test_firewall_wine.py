"""The firewall check on the Windows runtime under Wine (winside/firewall_side.py).

Wine has no firewall, so this shows what Wine can: every COM call fails cleanly and the
keeper's check (the COM probe as a child process) gives a well-formed `unknown` with the
errors; the answers match tests/firewall/recorded/windows/wine.json, the recording the
pure decision is tested on; and `nodekeeper firewall allow` runs exactly its netsh
commands (Wine's netsh accepts them all and exits 0). What only a real Windows can show
is listed in docs/decisions/065-firewall-check.md.
"""

from __future__ import annotations

from typing import Any

import pytest

from nodekeeper.firewall import netsh
from nodekeeper.firewall.observations import WindowsObservation
from tests.firewall.recorded import windows_raw
from tests.windows.wine import WineRuntime, scenario

pytestmark = pytest.mark.wine


@pytest.fixture(scope="module")
def seen(wine: WineRuntime) -> Any:
    return scenario(wine, "firewall", timeout=300)


def test_every_com_call_fails_cleanly_as_recorded(seen: Any) -> None:
    observation = seen["observation"]
    WindowsObservation.from_dict(observation)  # well-formed
    recorded = windows_raw("wine")
    # Wine answers as it did when wine.json was recorded (the environment differs).
    assert {k: v for k, v in observation.items() if k != "env"} == {
        k: v for k, v in recorded.items() if k != "env"
    }
    assert observation["errors"]["current_profiles"] == (
        "0x80020009 DISP_E_EXCEPTION (0x80004001 E_NOTIMPL: not implemented)"
    )
    assert observation["errors"]["security_center"] == (
        "0x8004100E WBEM_E_INVALID_NAMESPACE: no such WMI namespace"
    )


def test_the_keepers_check_is_unknown_with_why(seen: Any) -> None:
    verdict = seen["verdict"]
    assert verdict["status"] == "unknown"
    for protocol in ("tcp", "udp"):
        part = verdict["protocols"][protocol]
        assert part["status"] == "unknown"
        assert part["reason"].startswith("could not read the active firewall profiles: ")
        assert part["fix"] == []
    # The legacy API Wine does answer says "off": the check does not take that as allowed.
    assert seen["legacy_profile_enabled"] is False


def test_check_command_exits_3_for_unknown(seen: Any) -> None:
    check = seen["check"]
    assert check["code"] == 3, check
    assert "TCP  unknown  could not read the active firewall profiles" in check["out"]


def test_allow_runs_exactly_its_netsh_commands(seen: Any) -> None:
    program = seen["program"]
    expected = [
        c.with_executable("C:\\windows\\System32\\netsh.exe")
        for c in netsh.allow_commands(28967, program)
    ]
    assert seen["dry_run"]["code"] == 0
    assert seen["dry_run"]["out"].splitlines() == expected
    assert seen["is_user_an_admin"] == 1  # Wine's user is an administrator
    allow = seen["allow"]
    assert allow["code"] == 0, allow
    assert allow["out"].splitlines()[:5] == [
        "remove the rule 'nodekeeper storagenode TCP 28967' if it exists: done",
        "add the rule 'nodekeeper storagenode TCP 28967': done",
        "remove the rule 'nodekeeper storagenode UDP 28967' if it exists: done",
        "add the rule 'nodekeeper storagenode UDP 28967': done",
        f"inbound TCP and UDP to port 28967 allowed for {program}",
    ]
    assert allow["out"].splitlines()[5] == (
        "checked again: TCP unknown, UDP unknown (port 28967, Windows Firewall)"
    )
