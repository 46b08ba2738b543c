"""`nodekeeper firewall check` and `nodekeeper firewall allow` (decision 065).

``check`` runs the same check as the keeper, now, for the node of ``--config``: the
verdict per protocol, why, and the fix. Its exit code says the verdict: 0 allowed, 1
blocked, 3 unknown (2 as everywhere for a bad config or usage).

``allow`` opens the node's port. On Windows it runs the netsh commands the MSI runs
(``nodekeeper.firewall.netsh``), which needs an elevated prompt: without one it says so
and changes nothing. On Linux it prints the commands for the firewall tool it finds and
runs none: the machine's firewall is its administrator's (decision 065).

The commands live in the keeper's package because they read the keeper's config; the
check itself is ``nodekeeper.firewall``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from nodekeeper.cli.errors import EXIT_OK, EXIT_USAGE, CommandError
from nodekeeper.firewall.target import Target
from nodekeeper.firewall.verdict import Verdict
from nodekeeper.keeper.config import ConfigError, KeeperConfig, load_config

__all__ = ["EXIT_BLOCKED", "EXIT_UNKNOWN", "register"]

EXIT_BLOCKED = 1
EXIT_UNKNOWN = 3
VERDICT_EXIT = {"allowed": EXIT_OK, "blocked": EXIT_BLOCKED, "unknown": EXIT_UNKNOWN}
NETSH_TIMEOUT = 30.0
WIDTH = 80


def register(subparsers: argparse._SubParsersAction) -> None:
    firewall = subparsers.add_parser(
        "firewall",
        help="check or open the node's port in the firewall",
        description="Whether inbound TCP and UDP (QUIC) reach the node's port, and how to "
        "open it. The running keeper checks the same every hour (`nodekeeper status`).",
    )
    sub = firewall.add_subparsers(dest="firewall_command", metavar="COMMAND", required=True)
    check = sub.add_parser(
        "check",
        help="check now whether the firewall lets traffic reach the node's port",
        description="Read the firewall (Windows Firewall and Security Center; ufw, "
        "firewalld, nftables or iptables on Linux) and say, for TCP and UDP, whether "
        "inbound traffic to the node's port is allowed, blocked (with the fix) or unknown "
        "(with why). Exit code: 0 allowed, 1 blocked, 3 unknown, 2 bad config.",
    )
    check.add_argument("--config", type=Path, metavar="FILE", help="keeper config (TOML)")
    check.add_argument(
        "--json",
        action="store_true",
        help="print the verdict and what the firewall answered (a recording) as JSON",
    )
    check.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="give up on the firewall after SECONDS (default: firewall.timeout_seconds)",
    )
    check.set_defaults(handler=check_command)

    allow = sub.add_parser(
        "allow",
        help="open the node's port: add the firewall rules (Windows) or print them (Linux)",
        description="Windows: add inbound rules for the node's port, TCP and UDP, scoped to "
        "the node's program (`nodekeeper storagenode TCP <port>` and UDP; an existing one is "
        "replaced); needs an elevated prompt. Linux: print the commands that open the port "
        "in the firewall tool found on this machine, without running them.",
    )
    allow.add_argument("--config", type=Path, metavar="FILE", help="keeper config (TOML)")
    allow.add_argument(
        "--dry-run",
        action="store_true",
        help="Windows: print the netsh commands instead of running them",
    )
    allow.set_defaults(handler=allow_command)


# -- what to check -------------------------------------------------------------------------


def _load(path: Path | None) -> KeeperConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None


def configured_program(config: KeeperConfig) -> str | None:
    """The node's program as the keeper would run it now: the installed version's (with
    ``[update]``; None while nothing is installed), else ``node.command``'s."""
    if config.update is None:
        return config.node_argv()[0]
    from nodekeeper.keeper.update_settings import UpdateSettings
    from nodekeeper.updater.installs import Installs, Layout
    from nodekeeper.updater.state import UpdateState

    settings = UpdateSettings.from_config(config).machine
    layout = Layout(config.data_path())
    try:
        # Read, not Journal.read(): that moves a damaged journal aside, a keeper's job.
        state = UpdateState.from_json(json.loads((layout.state / "update.json").read_bytes()))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    version = state.running_version()
    if version is None:
        return None
    installs = Installs(layout.versions, settings.process, settings.python, settings.args)
    try:
        return installs.argv_for(version)[0]
    except (OSError, ValueError):
        return None


def _target(config: KeeperConfig) -> Target:
    from nodekeeper.keeper.firewall_watch import firewall_target

    return firewall_target(config, configured_program(config))


# -- check ---------------------------------------------------------------------------------


def check_command(args: argparse.Namespace) -> int:
    from nodekeeper.firewall.check import observe
    from nodekeeper.firewall.decision import decide
    from nodekeeper.firewall.verdict import unknown_verdict

    config = _load(args.config)
    timeout = args.timeout if args.timeout is not None else config.firewall.timeout_seconds
    if timeout <= 0:
        raise CommandError(f"--timeout must be more than 0 seconds (got {timeout:g})", EXIT_USAGE)
    target = _target(config)
    try:
        observation = observe(target, timeout)
        verdict = decide(target, observation, time.time())
    except Exception as exc:  # as the keeper does: a failed look is an unknown verdict
        observation = None
        verdict = unknown_verdict(
            f"the check failed: {type(exc).__name__}: {exc}",
            port=target.port,
            program=target.program,
            checked_at=time.time(),
        )
    if args.json:
        recording = observation.as_dict() if observation is not None else None
        data = {
            "verdict": verdict.as_dict(),
            "target": _target_dict(target),
            "observation": recording,
        }
        print(json.dumps(data, indent=2))
    else:
        sys.stdout.write(render_verdict(verdict, target, _allow_hint(args.config)))
    return VERDICT_EXIT[verdict.status]


def _target_dict(target: Target) -> dict[str, Any]:
    return {
        "port": target.port,
        "port_source": target.port_source,
        "program": target.program,
        "host": target.host,
        "problem": target.problem,
    }


def _allow_hint(config: Path | None) -> str:
    return "nodekeeper firewall allow" + (f" --config {config}" if config else "")


def render_verdict(verdict: Verdict, target: Target, allow: str, width: int = WIDTH) -> str:
    """The verdict for people (pure): one block per protocol, then the fix. Commands are
    never wrapped, so they can be copied whole."""
    lines = [
        f"port      {target.port if target.port is not None else '-'}"
        + (f" ({target.port_source})" if target.port_source else "")
    ]
    lines.append(f"program   {target.program or '-'}")
    if verdict.firewall:
        lines.append(f"firewall  {verdict.firewall}")
    lines.append("")
    for p in verdict.protocols:
        head = f"{p.protocol.upper()}  {p.status:<8} "
        lines += textwrap.wrap(
            p.reason,
            width,
            initial_indent=head,
            subsequent_indent=" " * len(head),
            break_on_hyphens=False,
        )
    blocked = [p for p in verdict.protocols if p.status == "blocked"]
    if blocked:
        lines += ["", f"fix, {verdict.fix_note}:"]
        if all(p.allow_fixes for p in blocked):
            lines += [f"  {allow}", "which runs:"]
        lines += [f"  {command}" for command in verdict.fix()]
    for note in verdict.notes:
        lines += textwrap.wrap(
            f"note: {note}", width, subsequent_indent="      ", break_on_hyphens=False
        )
    return "\n".join(lines) + "\n"


# -- allow ---------------------------------------------------------------------------------


def allow_command(args: argparse.Namespace) -> int:
    config = _load(args.config)
    target = _target(config)
    if target.problem is not None or target.port is None:
        raise CommandError(
            f"nothing was changed: {target.problem or 'the port is unknown'}", EXIT_USAGE
        )
    if sys.platform == "win32":
        return _allow_windows(config, target, args.dry_run)
    if sys.platform.startswith("linux"):
        return _allow_linux(config, target)
    raise CommandError(f"`nodekeeper firewall allow` knows Windows and Linux, not {sys.platform}")


def _allow_windows(config: KeeperConfig, target: Target, dry_run: bool) -> int:
    from nodekeeper.firewall import netsh

    assert target.port is not None
    if target.program is None:
        raise CommandError(
            "nothing was changed: the node's program is not known (no version installed "
            "yet?); install the node first, or set [firewall] program in the keeper's config",
            EXIT_USAGE,
        )
    commands = netsh.allow_commands(target.port, target.program)
    exe = _netsh_path()
    if dry_run:
        for command in commands:
            print(command.with_executable(exe))
        return EXIT_OK
    if not _elevated():
        raise CommandError(
            "adding firewall rules needs administrator rights: run this from an elevated "
            "prompt (right-click Command Prompt or PowerShell, Run as administrator); "
            "nothing was changed"
        )
    for command in commands:
        line = command.with_executable(exe)
        try:
            done = subprocess.run(
                line,
                capture_output=True,
                timeout=NETSH_TIMEOUT,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CommandError(f"netsh did not run ({exc}): {line}") from None
        said = _text(done.stdout) or _text(done.stderr)
        if done.returncode != 0 and not command.ignore_failure:
            raise CommandError(
                f"netsh refused ({said or f'exit {done.returncode}'}): {line}; the rules "
                "before it are in place, run `nodekeeper firewall allow` again"
            )
        print(
            f"{command.purpose}: done" if done.returncode == 0 else f"{command.purpose}: none there"
        )
    print(f"inbound TCP and UDP to port {target.port} allowed for {target.program}")
    from nodekeeper.firewall.check import run_check

    verdict = run_check(target, timeout=config.firewall.timeout_seconds)
    print(f"checked again: {verdict.summary()}")
    return EXIT_OK


def _allow_linux(config: KeeperConfig, target: Target) -> int:
    from nodekeeper.firewall import linux_commands
    from nodekeeper.firewall.check import run_check

    assert target.port is not None
    verdict = run_check(target, timeout=config.firewall.timeout_seconds)
    if verdict.status == "allowed":
        print(f"inbound TCP and UDP to port {target.port} are allowed already ({verdict.firewall})")
        return EXIT_OK
    if verdict.status == "blocked":
        print(f"to open port {target.port}, run {verdict.fix_note}:")
        for command in verdict.fix():
            print(f"  {command}")
        for note in verdict.notes:
            print(
                textwrap.fill(
                    f"note: {note}", WIDTH, subsequent_indent="      ", break_on_hyphens=False
                )
            )
        return EXIT_OK
    print(f"could not tell whether port {target.port} is open:")
    for p in verdict.protocols:
        print(textwrap.fill(f"{p.protocol.upper()}: {p.reason}", WIDTH, subsequent_indent="  "))
    tool = verdict.firewall.split(" + ")[0]
    if tool:
        print(f"if it is not, run {linux_commands.FIX_NOTE}:")
        for protocol in ("tcp", "udp"):
            for command in linux_commands.allow_for(tool, protocol, target.port):  # type: ignore[arg-type]
                print(f"  {command}")
    return EXIT_OK


def _netsh_path() -> str:
    # Windows' environment is case-insensitive: SYSTEMROOT is %SystemRoot%.
    root = os.environ.get("SYSTEMROOT") or os.environ.get("WINDIR") or "C:\\Windows"
    return os.path.join(root, "System32", "netsh.exe")


def _elevated() -> bool:
    """Whether this process runs with administrator rights (an elevated token)."""
    import ctypes

    try:
        return bool(ctypes.windll.shell32.IsUserAnAdmin())  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        return False


def _text(data: bytes) -> str:
    """netsh's last line of output (it writes in the console's OEM code page)."""
    lines = data.decode("oem" if sys.platform == "win32" else "utf-8", "replace").splitlines()
    lines = [line.strip() for line in lines if line.strip()]
    return lines[-1] if lines else ""
