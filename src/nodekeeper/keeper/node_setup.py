"""``POST /setup``: the tray wizard sets a node up that waits in needs-setup (decision 069).

Every field is checked first by ``node_settings`` (the validators of ``storagenode
setup``, the MSI and the wizard), all of them, so the wizard can show every error next
to its field at once. Then the node's own ``setup`` runs: the node's command with its
``run`` word replaced (``storagenode run --config-dir D`` → ``storagenode setup
--config-dir D ...``), the installed version's when the keeper installs the node. That is
the same setup the MSI runs with the same flags (``service.install_actions``: public
listen ``0.0.0.0:<port of the external address>``, the control port of the probe URL),
and the keeper, which never imports the node, needs no copy of it.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from nodekeeper import node_settings

SETUP_FIELDS = ("identity_dir", "wallet", "email", "external_address", "storage_dir", "allocation")
REQUIRED = ("wallet", "email", "external_address", "storage_dir", "allocation")
SETUP_DEADLINE_SECONDS = 60.0
# The node's `setup` names the flag it refused (storagenode.setup.FLAGS).
FLAG_FIELDS = {
    "--wallet": "wallet",
    "--email": "email",
    "--external-address": "external_address",
    "--identity-dir": "identity_dir",
    "--storage-dir": "storage_dir",
    "--allocated": "allocation",
}


class SetupRefused(Exception):
    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


@dataclass(frozen=True)
class SetupPlan:
    wallet: str
    email: str
    external_address: str
    storage_dir: Path
    allocation: str
    identity_dir: Path | None


def check(asked: dict[str, Any]) -> SetupPlan:
    """Every field checked, all of them; SetupRefused names each bad one."""
    errors: dict[str, str] = {}
    for key in asked:
        if key not in SETUP_FIELDS:
            errors[key] = f"unknown field; setup takes {', '.join(SETUP_FIELDS)}"
    given: dict[str, str] = {}
    for key in SETUP_FIELDS:
        value = asked.get(key)
        if value is None or value == "":
            if key in REQUIRED:
                errors[key] = f"{key.replace('_', ' ')} is needed to set the node up"
        elif isinstance(value, str) or (key == "allocation" and type(value) is int):
            given[key] = str(value)
        else:
            errors[key] = f"{key.replace('_', ' ')} must be text"
    checked: dict[str, Any] = {}
    steps = {
        "wallet": node_settings.check_wallet,
        "email": node_settings.check_email,
        "external_address": node_settings.check_external_address,
        "identity_dir": node_settings.check_identity_dir,
    }
    for key, step in steps.items():
        if key in given:
            try:
                checked[key] = step(given[key])
            except node_settings.InvalidSetting as exc:
                errors[exc.field] = exc.message
    if "storage_dir" in given and "allocation" in given:
        try:
            checked["storage"] = node_settings.check_storage(
                given["storage_dir"], given["allocation"]
            )
        except node_settings.InvalidSetting as exc:
            errors[exc.field] = exc.message
    if errors:
        raise SetupRefused(errors)
    return SetupPlan(
        wallet=checked["wallet"],
        email=checked["email"],
        external_address=checked["external_address"],
        storage_dir=checked["storage"][0],
        allocation=given["allocation"],
        identity_dir=checked.get("identity_dir"),
    )


def setup_argv(
    node_command: list[str], config_dir: Path, plan: SetupPlan, probe_url: str
) -> list[str] | None:
    """The node's ``setup`` command line (pure); None when the node's command has no
    ``run`` word to replace."""
    if "run" not in node_command:
        return None
    prefix = node_command[: node_command.index("run")]
    port = plan.external_address.rsplit(":", 1)[1]
    argv = [
        *prefix,
        "setup",
        "--config-dir",
        str(config_dir),
        "--storage-dir",
        str(plan.storage_dir),
        "--allocated",
        plan.allocation,
        "--listen",
        f"0.0.0.0:{port}",
        "--wallet",
        plan.wallet,
        "--email",
        plan.email,
        "--external-address",
        plan.external_address,
    ]
    control = urlsplit(probe_url)
    if control.hostname in ("127.0.0.1", "localhost") and control.port:
        argv += ["--control-listen", f"127.0.0.1:{control.port}"]
    if plan.identity_dir is not None:
        argv += ["--identity-dir", str(plan.identity_dir)]
    return argv


def refusal(output: str) -> dict[str, str]:
    """The node's refusal as field errors (pure): its last line, by the flag it names."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    last = lines[-1] if lines else "setup failed without saying why"
    try:  # the reference node logs JSON lines: {"level": ..., "msg": ...}
        line = json.loads(last)
    except ValueError:
        line = None
    if isinstance(line, dict) and isinstance(line.get("msg"), str):
        last = line["msg"]
    for marker in ("setup refused: ", "storagenode: error: "):
        last = last.split(marker, 1)[-1]
    flag, sep, rest = last.partition(": ")
    if sep and flag in FLAG_FIELDS:
        return {FLAG_FIELDS[flag]: rest}
    return {"setup": last}


async def run_setup(argv: list[str], env: dict[str, str], cwd: Path | None) -> None:
    """Run the node's setup with a deadline; SetupRefused with its words on failure."""

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv,
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            cwd=cwd,
            timeout=SETUP_DEADLINE_SECONDS,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    try:
        done = await asyncio.to_thread(run)
    except subprocess.TimeoutExpired:
        raise SetupRefused(
            {"setup": f"the node's setup did not finish within {SETUP_DEADLINE_SECONDS:g} s"}
        ) from None
    except OSError as exc:
        raise SetupRefused({"setup": f"cannot run the node's setup ({argv[0]}): {exc}"}) from None
    if done.returncode != 0:
        raise SetupRefused(refusal(done.stderr or done.stdout))
