"""Linux: run the firewall tools that are installed and keep what they print.

Only tools found on PATH or in the sbin directories (a service's PATH often lacks them)
are run, each once, with ``LC_ALL=C`` (ufw translates its output) and whatever is left
of the deadline; a tool that does not finish in time is killed and recorded as such.
Most need root to read the rules; run as another user they fail, and the decision says
so. Nothing here changes a rule.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable

from nodekeeper.firewall.observations import (
    FIREWALLD,
    FIREWALLD_STATE,
    IPTABLES,
    IPTABLES_VERSION,
    NFT,
    UFW,
    LinuxObservation,
    ToolRun,
)

SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")
# What each key runs; firewalld's zone is listed only when firewalld runs.
COMMANDS: dict[str, tuple[str, ...]] = {
    UFW: ("ufw", "status", "verbose"),
    FIREWALLD_STATE: ("firewall-cmd", "--state"),
    FIREWALLD: ("firewall-cmd", "--list-all"),
    NFT: ("nft", "-j", "list", "ruleset"),
    IPTABLES_VERSION: ("iptables", "-V"),
    IPTABLES: ("iptables", "-S"),
}
MAX_OUTPUT = 4 << 20  # a ruleset larger than this is not one the walk should read


def find_tool(name: str, path: str | None = None) -> str | None:
    search = os.pathsep.join([path if path is not None else os.environ.get("PATH", ""), *SBIN])
    return shutil.which(name, path=search)


def run_tool(argv: tuple[str, ...], timeout: float, executable: str | None = None) -> ToolRun:
    """Run ``argv`` (``executable``: where its program was found) for at most
    ``timeout`` seconds; the child is killed at the deadline."""
    if timeout <= 0:
        return ToolRun(argv, None, error=f"`{' '.join(argv)}` not run: the check's deadline passed")
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    try:
        done = subprocess.run(
            argv,
            executable=executable,
            capture_output=True,
            timeout=timeout,
            env=env,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return ToolRun(
            argv, None, error=f"`{' '.join(argv)}` did not finish within {timeout:.3g} s"
        )
    except OSError as exc:
        return ToolRun(argv, None, error=f"`{' '.join(argv)}` could not run: {exc}")
    out = done.stdout[:MAX_OUTPUT].decode("utf-8", "replace")
    err = done.stderr[:MAX_OUTPUT].decode("utf-8", "replace")
    return ToolRun(argv, done.returncode, out, err)


def observe(
    timeout: float,
    *,
    find: Callable[[str], str | None] = find_tool,
    clock: Callable[[], float] = time.monotonic,
) -> LinuxObservation:
    """Run each installed tool within ``timeout`` seconds in all."""
    deadline = clock() + timeout
    runs: dict[str, ToolRun] = {}
    for key, (program, *args) in COMMANDS.items():
        if key == FIREWALLD:
            state = runs.get(FIREWALLD_STATE)
            if state is None or not state.ok or state.stdout.strip() != "running":
                continue
        found = find(program)
        if found is None:
            continue
        runs[key] = run_tool((program, *args), deadline - clock(), executable=found)
    return LinuxObservation(euid=os.geteuid(), runs=runs)
