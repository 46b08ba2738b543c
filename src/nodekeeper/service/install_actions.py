"""What the MSI cannot do by itself, run as its deferred custom actions (decision 066):

    python -m nodekeeper.service.install_actions configure --data-dir D --runtime R [PROPERTIES]
    python -m nodekeeper.service.install_actions remove --data-dir D [--remove-data 1]

``configure`` (install and upgrade, as LocalSystem, after the service is registered and
before it starts):

1. validates every property given on the command line; nothing is written before all
   have passed;
2. writes the keeper's config, ``<data dir>\\keeper.toml``, if there is none (an upgrade
   keeps the operator's); when the MSI ships a trusted root (``--trusted-root``, decision
   086) its ``[update]`` table names it as ``trusted_root``, and a kept config whose
   ``[update]`` has no ``trusted_root`` gets that one line added;
3. sets the node up with the properties (``storagenode setup``'s own code) when they are
   given and the node is not set up yet; without them the node is left in needs-setup for
   the tray app's wizard;
4. adds the inbound firewall rules for the node's port, TCP and UDP (QUIC), with the
   commands ``nodekeeper firewall allow`` runs (``firewall.netsh``): scoped to the
   runtime's python.exe when the node runs from it, to the port alone when the keeper
   installs the node from a control plane (its path changes with every update);
5. gives the data directory its ACLs (``acl.py``);
6. sets the service's recovery actions (``windows_config.configure``).

A failure exits 1, which fails the install: Windows Installer then rolls back what it did,
and this action removes what it wrote itself. What it did or why it failed goes to stderr,
to the MSI's verbose log when there is one (``--msi-log [MsiLogFileLocation]``: an exe
custom action has no other way into the installer's log; Wine leaves the property unset),
and always to ``nodekeeper-install.log`` in the system's temp directory
(``C:\\Windows\\Temp`` for the installer's LocalSystem), which a rollback leaves alone.

``remove`` (uninstall, not upgrade): deletes the firewall rules and the ``__pycache__``
directories Python wrote
beside the program (Windows Installer removes only the files it installed) and, with
``--remove-data 1``, the data directory. Without it the node's data, identity and config
stay: a storage node's data is the operator's income.

Every value arrives as ``"[VALUE] "`` (see installer/nodekeeper.wxs): stripped here.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nodekeeper.service import windows_config

NODE_DIR = "storagenode"
NETSH_TIMEOUT = 30.0
KEEPER_CONFIG = "keeper.toml"
INSTALL_LOG = "nodekeeper-install.log"
DEFAULT_PORT = 28967  # Storj's, which home routers are usually already forwarding


class ActionFailed(Exception):
    """The install must fail; the message says what to change."""


@dataclass(frozen=True)
class Properties:
    """The MSI's public properties, stripped; "" = not given."""

    storage_dir: str = ""
    allocation: str = ""
    wallet: str = ""
    email: str = ""
    address: str = ""
    port: str = ""
    identity_dir: str = ""
    server_url: str = ""
    keeper_status: str = ""  # 127.0.0.1:PORT of the keeper's status API; "" = 7779
    control_port: str = ""  # the node's loopback control port; "" = 7778

    @property
    def node_given(self) -> bool:
        """Any of the node's own settings: then all that setup needs must be there."""
        return any((self.storage_dir, self.allocation, self.wallet, self.email, self.address))


@dataclass(frozen=True)
class NodePlan:
    """A validated node setup."""

    storage_dir: Path
    allocation: str
    listen: str
    wallet: str | None
    email: str | None
    external_address: str | None
    identity_dir: Path | None


def keeper_config_text(
    runtime: Path,
    server_url: str,
    status_port: int | None = None,
    control_port: int | None = None,
    trusted_root: Path | None = None,
) -> str:
    """The keeper's config for an installed system (pure). The data directory is the
    config's own; the node runs from the installed runtime unless the keeper installs it
    from a control plane (``[update]``). Ports only when they are not the defaults (the
    keeper's 7779, the node's 7778), e.g. beside another keeper on the same PC. The
    trusted root the MSI ships goes into ``[update]``; without one (no SERVER_URL: the
    keeper downloads nothing) a comment names it for whoever adds the table later."""
    python = str(runtime / "python.exe")
    lines = [
        "# Written by the nodekeeper installer. Yours to edit: upgrades keep it.",
        "# Every key: docs/config-reference.md.",
        'data_dir = "."',
        "",
        "[node]",
        f"command = [{_toml(python)}, '-m', 'storagenode', 'run', '--config-dir', "
        "'{config_dir}']",
        # The reference node's read-only page on its control address (decision 069).
        f"dashboard_url = 'http://127.0.0.1:{control_port or 7778}/dashboard'",
    ]
    if status_port is not None:
        lines += ["", "[status]", f"listen = '127.0.0.1:{status_port}'"]
    if control_port is not None:
        control = f"http://127.0.0.1:{control_port}"
        lines += ["", "[probe]", f"url = '{control}/pulse'",
                  "", "[stop]", f"shutdown_url = '{control}/shutdown'"]  # fmt: skip
    if server_url:
        lines += ["", "[update]", f"server = {_toml(server_url)}"]
        if trusted_root is not None:
            lines.append(trusted_root_line(trusted_root))
    elif trusted_root is not None:
        lines += ["", "# Signed releases: an [update] table added here should name the root",
                  "# this installer ships, so that the keeper verifies what it downloads:",
                  f"# {trusted_root_line(trusted_root)}"]  # fmt: skip
    return "\n".join(lines) + "\n"


def trusted_root_line(trusted_root: Path) -> str:
    return f"trusted_root = {_toml(str(trusted_root))}"


# A standard table header `[update]` (spaces and a comment allowed), not `[update.x]` and
# not `[[update]]`: the line after which a key of that table can go.
_UPDATE_HEADER = re.compile(r"^[ \t]*\[[ \t]*update[ \t]*\][ \t]*(#.*)?$")


def add_trusted_root(text: str, trusted_root: Path) -> tuple[str | None, str]:
    """A kept keeper.toml (pure): the text with ``trusted_root`` added to its ``[update]``
    table, or None and why not. An upgrade to an MSI with a root must not leave a managed
    keeper verifying nothing; the operator's own ``trusted_root`` is kept, and a config
    this cannot edit safely (``[update]`` written as an inline table or dotted keys) is
    left as it is, with the line to add by hand."""
    wanted = trusted_root_line(trusted_root)
    try:
        before = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return None, f"not TOML ({exc}): add `{wanted}` to its [update] table by hand"
    update = before.get("update")
    if not isinstance(update, dict):
        return None, "no [update] table: this keeper downloads nothing to verify"
    if "trusted_root" in update:
        return None, f"kept its own trusted_root = {update['trusted_root']!r}"
    lines = text.splitlines(keepends=True)
    headers = [n for n, line in enumerate(lines) if _UPDATE_HEADER.match(line.rstrip("\r\n"))]
    if len(headers) == 1:
        at = headers[0]
        newline = "\r\n" if lines[at].endswith("\r\n") else "\n"
        if not lines[at].endswith("\n"):  # the header is the file's last line
            lines[at] += newline
        lines.insert(at + 1, wanted + newline)
        edited = "".join(lines)
        with contextlib.suppress(tomllib.TOMLDecodeError):
            after = tomllib.loads(edited)
            expected = {**before, "update": {**update, "trusted_root": str(trusted_root)}}
            if after == expected:  # exactly one key more, nothing else moved
                return edited, f"added `{wanted}` to its [update] table"
    return None, f"could not edit its [update] table safely: add `{wanted}` to it by hand"


def ports(props: Properties) -> tuple[int | None, int | None]:
    """KEEPER_STATUS (127.0.0.1:PORT) and CONTROL_PORT, checked; None = the default."""
    from nodekeeper.node_settings import check_port

    status = None
    if props.keeper_status:
        host, _, port = props.keeper_status.rpartition(":")
        if host != "127.0.0.1":
            raise ActionFailed(
                f"KEEPER_STATUS {props.keeper_status!r}: the status API listens on loopback "
                "only; give 127.0.0.1:PORT"
            )
        status = check_port(port)
    return status, check_port(props.control_port) if props.control_port else None


def _toml(text: str) -> str:
    """A TOML literal string (no escapes: Windows paths stay readable)."""
    if "'" in text or "\n" in text:
        raise ActionFailed(f"{text!r}: quotes and line breaks cannot be written to the config")
    return f"'{text}'"


def plan_node(props: Properties) -> NodePlan | None:
    """Validate the node's properties (all of them, before anything is written).
    InvalidSetting (a ValueError naming the field) or ActionFailed."""
    if props.server_url:
        from nodekeeper.node_settings import check_server_url

        check_server_url(props.server_url)
    if not props.node_given:
        if props.identity_dir or props.port:
            raise ActionFailed(
                "IDENTITY_DIR and PORT set up a node: give STORAGE_DIR, ALLOCATION, WALLET, "
                "EMAIL and ADDRESS with them (or none, to finish in the tray app's wizard)"
            )
        return None
    missing = [
        name
        for name, value in (
            ("STORAGE_DIR", props.storage_dir),
            ("ALLOCATION", props.allocation),
            ("WALLET", props.wallet),
            ("EMAIL", props.email),
            ("ADDRESS", props.address),
        )
        if not value
    ]
    if missing:
        raise ActionFailed(
            f"missing {', '.join(missing)}: an unattended install sets the node up with "
            "STORAGE_DIR, ALLOCATION, WALLET, EMAIL and ADDRESS together"
        )
    from nodekeeper import node_settings as check

    wallet = check.check_wallet(props.wallet)
    email = check.check_email(props.email)
    address = check.check_external_address(props.address)
    port = check.check_port(props.port) if props.port else int(address.rsplit(":", 1)[1])
    storage, _ = check.check_storage(Path(props.storage_dir), props.allocation)
    identity = check.check_identity_dir(Path(props.identity_dir)) if props.identity_dir else None
    return NodePlan(
        storage_dir=storage,
        allocation=props.allocation,
        listen=f"0.0.0.0:{port}",
        wallet=wallet,
        email=email,
        external_address=address,
        identity_dir=identity,
    )


def set_up_node(plan: NodePlan, node_dir: Path, control_port: int | None = None) -> None:
    from storagenode.setup import SetupRefusedError, SetupRequest, run_setup

    request = SetupRequest(
        config_dir=node_dir,
        storage_dir=plan.storage_dir,
        allocated=plan.allocation,
        listen=plan.listen,
        control_listen=f"127.0.0.1:{control_port or 7778}",
        wallet=plan.wallet,
        email=plan.email,
        external_address=plan.external_address,
        identity_dir=plan.identity_dir,
    )
    try:
        run_setup(request)
    except SetupRefusedError as exc:
        raise ActionFailed(str(exc)) from None


def configure(
    data_dir: Path, runtime: Path, props: Properties, trusted_root: Path | None = None
) -> list[str]:
    """Returns what it did, one line each; ActionFailed leaves nothing of its own.
    ``trusted_root``: the TUF root this MSI installed (decision 086), None without one."""
    try:
        plan = plan_node(props)
        status_port, control_port = ports(props)
    except ValueError as exc:  # node_settings.InvalidSetting: names the property
        field = str(getattr(exc, "field", "")).upper()
        raise ActionFailed(f"{field}: {exc}" if field else str(exc)) from None
    if trusted_root is not None and not trusted_root.is_file():
        raise ActionFailed(
            f"this MSI ships a trusted root, but {trusted_root} is not there: repair or "
            "reinstall from the same MSI"
        )
    done: list[str] = []
    created: list[Path] = []
    try:
        if not data_dir.exists():
            data_dir.mkdir(parents=True)
            created.append(data_dir)
        config = data_dir / KEEPER_CONFIG
        if config.exists():
            done.append(f"kept {config}")
            if trusted_root is not None:
                done.append(point_at_trusted_root(config, trusted_root))
        else:
            text = keeper_config_text(
                runtime, props.server_url, status_port, control_port, trusted_root
            )
            config.write_text(text, encoding="utf-8")
            created.append(config)
            done.append(f"wrote {config}")
            if trusted_root is not None:
                verifies = (
                    "[update] trusted_root" if props.server_url else "a comment (no [update])"
                )
                done.append(f"trusted root {trusted_root}: named in {config} by {verifies}")
        node_dir = data_dir / NODE_DIR
        if plan is not None:
            if (node_dir / "config.toml").exists():
                done.append(f"the node in {node_dir} is set up already: properties not applied")
            else:
                if not node_dir.exists():
                    created.append(node_dir)
                set_up_node(plan, node_dir, control_port)
                done.append(f"set the node up in {node_dir}, pieces in {plan.storage_dir}")
            program = None if props.server_url else str(runtime / "python.exe")
            done += firewall_rules(int(plan.listen.rsplit(":", 1)[1]), program, add=True)
        from nodekeeper.service import acl

        done += acl.secure(data_dir, node_dir)
    except BaseException:
        for path in reversed(created):  # ours only: the installer undoes the rest
            with contextlib.suppress(OSError):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        raise
    try:
        refused = windows_config.configure(windows_config.SERVICE_NAME, windows_config.STOP_SECONDS)
    except Exception as exc:  # noted, not fatal: the service sets them again at start
        refused = [str(exc)]
    done += [f"not set: {why}" for why in refused] or ["set the service's recovery actions"]
    return done


def point_at_trusted_root(config: Path, trusted_root: Path) -> str:
    """Adds ``trusted_root`` to a kept config's ``[update]`` (see add_trusted_root); an
    unreadable or uneditable config fails nothing: the keeper's status then warns that it
    verifies no signatures."""
    try:
        raw = config.read_bytes()
        edited, why = add_trusted_root(raw.decode("utf-8-sig"), trusted_root)
        if edited is not None:
            bom = "\ufeff" if raw.startswith(b"\xef\xbb\xbf") else ""
            tmp = config.with_name(config.name + ".new")
            tmp.write_text(bom + edited, encoding="utf-8", newline="")
            os.replace(tmp, config)
    except (OSError, UnicodeDecodeError) as exc:
        why = f"not read or written ({exc})"
    return f"trusted root {trusted_root}: {config.name}: {why}"


def firewall_rules(port: int, program: str | None, *, add: bool) -> list[str]:
    """Run netsh's delete-then-add (or delete) for the node's port; returns what it did.
    A refused add fails the install (ActionFailed): a node nobody can reach is what the
    operator installed it to avoid."""
    from nodekeeper.firewall import netsh

    root = os.environ.get("SYSTEMROOT") or os.environ.get("WINDIR") or "C:\\Windows"
    exe = os.path.join(root, "System32", "netsh.exe")
    commands = netsh.allow_commands(port, program) if add else netsh.remove_commands(port)
    done = []
    for command in commands:
        line = command.with_executable(exe)
        try:
            result = subprocess.run(
                line, capture_output=True, timeout=NETSH_TIMEOUT, stdin=subprocess.DEVNULL
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ActionFailed(f"netsh did not run ({exc}): {line}") from None
        if result.returncode != 0 and not command.ignore_failure:
            raise ActionFailed(f"netsh refused (exit {result.returncode}): {line}")
        done.append(f"firewall: {line} (exit {result.returncode})")
    return done


def remove(data_dir: Path, runtime: Path | None, remove_data: bool) -> list[str]:
    done = []
    try:
        from nodekeeper.firewall.target import node_listen

        listen = node_listen(data_dir / NODE_DIR)
    except (ValueError, OSError):
        listen = None
    if listen is not None and listen[0].rsplit(":", 1)[-1].isdigit():
        try:
            done += firewall_rules(int(listen[0].rsplit(":", 1)[1]), None, add=False)
        except ActionFailed as exc:  # uninstall goes on: the rules only admit traffic
            done.append(f"firewall rules not removed: {exc}")
    if runtime is not None and runtime.is_dir():
        caches = [p for p in runtime.rglob("__pycache__") if p.is_dir()]
        for cache in caches:
            shutil.rmtree(cache, ignore_errors=True)
        done.append(f"removed {len(caches)} __pycache__ directories")
    if remove_data and data_dir.is_dir():
        shutil.rmtree(data_dir, ignore_errors=True)
        done.append(f"removed {data_dir} (REMOVE_DATA=1)")
    else:
        done.append(f"kept {data_dir}")
    return done


def _say(lines: Sequence[str], msi_log: str) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    text = "".join(f"nodekeeper install action: {line}\n" for line in lines)
    sys.stderr.write(text)
    targets = [Path(tempfile.gettempdir()) / INSTALL_LOG]
    if msi_log:
        targets.append(Path(msi_log))
    for target in targets:
        with contextlib.suppress(OSError), open(target, "a", encoding="utf-8") as f:
            f.write(f"{stamp} {text}")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m nodekeeper.service.install_actions")
    sub = p.add_subparsers(dest="action", required=True)
    conf = sub.add_parser("configure")
    rem = sub.add_parser("remove")
    for s in (conf, rem):
        s.add_argument("--data-dir", required=True)
        s.add_argument("--runtime", default="")
        s.add_argument("--msi-log", default="")
    for name in Properties.__dataclass_fields__:
        conf.add_argument("--" + name.replace("_", "-"), default="")
    rem.add_argument("--remove-data", default="")
    # Only an MSI built with a trusted root passes it: its installed path (decision 086).
    conf.add_argument("--trusted-root", default="")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    data_dir = Path(args.data_dir.strip())
    runtime = Path(args.runtime.strip()) if args.runtime.strip() else None
    msi_log = args.msi_log.strip()
    try:
        if args.action == "configure":
            if runtime is None:
                raise ActionFailed("--runtime is required")
            props = Properties(
                **{n: getattr(args, n).strip() for n in Properties.__dataclass_fields__}
            )
            shipped = args.trusted_root.strip()
            done = configure(data_dir, runtime, props, Path(shipped) if shipped else None)
        else:
            done = remove(data_dir, runtime, args.remove_data.strip() == "1")
    except ActionFailed as exc:
        _say([f"FAILED: {exc}", "nothing was changed"], msi_log)
        return 1
    except Exception as exc:  # an unexpected failure must still say what it was
        _say([f"FAILED: {type(exc).__name__}: {exc}"], msi_log)
        return 1
    _say(done, msi_log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
