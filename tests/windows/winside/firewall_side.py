"""The firewall check inside Wine (the `firewall` scenario of scenarios.py).

Wine has no firewall: what can be shown here is that every COM call fails cleanly and
the verdict is a well-formed unknown, through the same child process the keeper runs,
and that `nodekeeper firewall allow` runs its netsh commands (Wine's netsh accepts
anything). The pytest side (tests/windows/test_firewall_wine.py) makes the assertions.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

PORT = 28967


def _legacy_profile_enabled() -> Any:
    """INetFwMgr.LocalPolicy.CurrentProfile.FirewallEnabled: the answer the check does not
    use, recorded to show why."""
    import pythoncom
    import win32com.client

    pythoncom.CoInitialize()
    try:
        manager = win32com.client.Dispatch("HNetCfg.FwMgr")
        return bool(manager.LocalPolicy.CurrentProfile.FirewallEnabled)
    except Exception as exc:
        return f"error: {exc!r}"
    finally:
        pythoncom.CoUninitialize()


def _cli(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "nodekeeper", "firewall", *args],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    return {"code": done.returncode, "out": done.stdout, "err": done.stderr}


async def scenario() -> dict[str, Any]:
    import ctypes

    from nodekeeper.firewall import windows_probe
    from nodekeeper.firewall.check import run_check
    from nodekeeper.firewall.target import Target

    program = sys.executable
    work = Path(tempfile.mkdtemp(prefix="firewall-"))
    node = work / "node"
    node.mkdir()
    (node / "config.toml").write_text(f'config_format = 1\nlisten = ":{PORT}"\n')
    config = work / "keeper.toml"
    toml_path = lambda p: str(p).replace("\\", "/")  # noqa: E731
    config.write_text(
        f'data_dir = "{toml_path(work / "data")}"\n[node]\nconfig_dir = "{toml_path(node)}"\n'
        f'command = ["{toml_path(program)}"]\n'
    )
    observation = windows_probe.observe(PORT, program)
    verdict = run_check(Target(PORT, program, "test", host="0.0.0.0"), timeout=60)
    return {
        "observation": observation.as_dict(),
        "verdict": verdict.as_dict(),
        "legacy_profile_enabled": _legacy_profile_enabled(),
        "is_user_an_admin": ctypes.windll.shell32.IsUserAnAdmin(),
        "check": _cli("check", "--config", str(config)),
        "dry_run": _cli("allow", "--dry-run", "--config", str(config)),
        "allow": _cli("allow", "--config", str(config)),
        "program": program,
    }
