"""The systemd unit that runs nodekeeper as a Linux service, and the steps that install it.

`render_unit` is pure: typed inputs in, the unit's text out. `install` and `uninstall` are
the thin I/O around it and act through a `Host` (where the unit goes, how a command runs,
how a user is looked up, whether systemd is running), so tests and packagers point them
at a directory and a command runner of their own.

The unit runs the launcher, never the keeper directly: the launcher is what lets the
keeper update itself and fall back. Why each setting is what it is:
docs/decisions/064-systemd-unit.md.
"""

from __future__ import annotations

import math
import os
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nodekeeper.durable import fsync_dir, write_durably

UNIT_NAME = "nodekeeper.service"
UNIT_DIR = Path("/etc/systemd/system")
DEFAULT_USER = "nodekeeper"

# The unit restarts only when the launcher itself exits (it restarts a failing keeper on
# its own, with backoff): a launcher crash, or exit 2 for a config it cannot read.
RESTART_SEC = 5
# After the node has stopped the keeper still writes its last lines and state; after the
# keeper has stopped the launcher saves its state. Each gets this much beyond the stop
# below it, so a slow stop is finished by the layer that understands it, not SIGKILL.
STOP_MARGIN_SECONDS = 15.0
# ProtectHome= covers these (systemd.exec(5)); PrivateTmp= replaces these.
HOME_DIRS = (Path("/home"), Path("/root"), Path("/run/user"))
TEMP_DIRS = (Path("/tmp"), Path("/var/tmp"))
# The cgroup v2 controllers the keeper uses for the node's limits (platform/cgroup.py).
DELEGATED_CONTROLLERS = ("memory", "cpu")


class UnitInputError(ValueError):
    """A value the unit cannot carry; the message names it and says what to give."""


@dataclass(frozen=True)
class UnitSpec:
    """Everything the unit depends on, resolved to absolute paths."""

    python: Path  # the interpreter that has nodekeeper installed
    config: Path  # the keeper's config, passed to the launcher (and by it to the keeper)
    data_dir: Path  # the keeper's data_dir: state, logs, installed versions
    node_config_dir: Path  # the node's config and identity (by default inside data_dir)
    storage_dirs: tuple[Path, ...]  # where the node keeps its data: the operator's disks
    user: str
    group: str
    node_stop_seconds: float  # the keeper's [stop] timeout_seconds
    version: str = ""  # nodekeeper's, for the header comment
    # Other paths the service reads: where a venv's interpreter symlink really points.
    read_paths: tuple[Path, ...] = ()

    @property
    def owned_dirs(self) -> tuple[Path, Path]:
        """The keeper's own directories: install makes them, owned by the user."""
        return (self.data_dir, self.node_config_dir)

    @property
    def launcher_stop_seconds(self) -> float:
        """How long the launcher waits for the keeper to stop (its --stop-timeout-seconds)."""
        return self.node_stop_seconds + STOP_MARGIN_SECONDS

    @property
    def unit_stop_seconds(self) -> int:
        """TimeoutStopSec: after it, systemd kills whatever is left in the unit."""
        return math.ceil(self.launcher_stop_seconds + STOP_MARGIN_SECONDS)


# -- the unit (pure) -----------------------------------------------------------------------

# systemd would read these as quoting, escapes, specifiers (%) or variables ($). Escaping
# them is possible but hard to get right in every setting; a path with them is refused.
_UNSAFE = set("\"'\\%$")


def path_problem(path: Path) -> str | None:
    """Why ``path`` cannot go into the unit as it is, or None."""
    text = str(path)
    if not path.is_absolute():
        return "must be an absolute path (the service does not run in this directory)"
    if ".." in path.parts or text.startswith("//"):
        # systemd ignores such a path in ReadWritePaths= ("not normalized"): the data
        # dir would silently stay read-only.
        return "must be normalized (no .. and no leading //)"
    if any(c.isspace() or c in _UNSAFE or not c.isprintable() for c in text):
        return (
            "contains a space, quote, backslash, % or $, which systemd would read as "
            "syntax; use a path without them (a symlink will do)"
        )
    return None


def writable_paths(spec: UnitSpec) -> list[Path]:
    """Every path the service writes, each once, none inside another."""
    kept: list[Path] = []
    for path in (*spec.owned_dirs, *spec.storage_dirs):
        if is_under(path, kept):
            continue
        kept = [k for k in kept if not k.is_relative_to(path)] + [path]
    return kept


def is_under(path: Path, roots: Sequence[Path]) -> bool:
    return any(path.is_relative_to(root) for root in roots)


def _needed(spec: UnitSpec) -> list[Path]:
    return [spec.python, *spec.read_paths, spec.config, *writable_paths(spec)]


def protect_home(spec: UnitSpec) -> str:
    """``yes`` hides /home, /root and /run/user; ``read-only`` when the service needs a
    path there. ReadWritePaths= can be nested in a read-only tree but not in an
    inaccessible one (systemd.exec(5), ReadWritePaths=), so a storage dir under /home
    stays writable only with read-only."""
    return "read-only" if any(is_under(p, HOME_DIRS) for p in _needed(spec)) else "yes"


def private_tmp(spec: UnitSpec) -> str:
    """``yes`` gives the service its own empty /tmp and /var/tmp, which would hide a
    config or interpreter kept there (data there is refused by the commands: it would not
    survive a reboot)."""
    return "no" if any(is_under(p, TEMP_DIRS) for p in _needed(spec)) else "yes"


def exec_start(spec: UnitSpec) -> list[str]:
    return [
        str(spec.python),
        "-m",
        "nodekeeper.launcher",
        "--config",
        str(spec.config),
        "--stop-timeout-seconds",
        f"{spec.launcher_stop_seconds:g}",
        # Delegate= gives us the unit's cgroup: the launcher moves into a leaf of it, so
        # the node's cgroup beside can have the memory and cpu controllers.
        "--delegated-cgroup",
    ]


def render_unit(spec: UnitSpec) -> str:
    """The unit file's text. Raises UnitInputError for a path it cannot carry."""
    for path in _needed(spec):
        problem = path_problem(path)
        if problem:
            raise UnitInputError(f"{path}: {problem}")
    rw = " ".join(str(p) for p in writable_paths(spec))
    made_by = f"nodekeeper {spec.version}".strip()
    lines = [
        f"# Written by `nodekeeper service install` ({made_by}); `nodekeeper service unit`",
        "# prints it. Install again after changing data_dir or [stop] timeout_seconds in",
        f"# {spec.config}. Why each setting: docs/decisions/064-systemd-unit.md.",
        "[Unit]",
        "Description=nodekeeper: keeps the storage node up to date and alive",
        "Wants=network-online.target",
        "After=network-online.target",
        # Never start on an empty mount point: the node would write to the wrong disk.
        f"RequiresMountsFor={rw}",
        # Never give up (the launcher exits only when it cannot run at all); RestartSec
        # keeps the retries slow.
        "StartLimitIntervalSec=0",
        "",
        "[Service]",
        # exec: a missing interpreter fails the start instead of a "started" unit that
        # dies at once. No sd_notify in the keeper or launcher, so no notify/WatchdogSec.
        "Type=exec",
        f"ExecStart={' '.join(exec_start(spec))}",
        f"User={spec.user}",
        f"Group={spec.group}",
        "SyslogIdentifier=nodekeeper",
        "Restart=always",
        f"RestartSec={RESTART_SEC}s",
        # SIGTERM to the launcher only: it stops the keeper, which stops the node
        # gracefully through its shim. Whatever is left when the launcher has exited,
        # or at TimeoutStopSec, gets SIGKILL, the node's cgroup included.
        "KillMode=mixed",
        f"TimeoutStopSec={spec.unit_stop_seconds}s",
        # The keeper makes the node's cgroup below the unit's (platform/cgroup.py).
        f"Delegate={' '.join(DELEGATED_CONTROLLERS)}",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        f"ReadWritePaths={rw}",
        f"ProtectHome={protect_home(spec)}",
        f"PrivateTmp={private_tmp(spec)}",
        "PrivateDevices=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        # Not ProtectControlGroups=: it would make the delegated cgroup read-only.
        "RestrictSUIDSGID=yes",
        "RestrictRealtime=yes",
        "RestrictNamespaces=yes",
        "LockPersonality=yes",
        # AF_NETLINK: getaddrinfo and Go's net package list interfaces through it.
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
        "CapabilityBoundingSet=",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    return "\n".join(lines) + "\n"


def useradd_argv(spec: UnitSpec) -> list[str]:
    """A system user with its own group, no login and no home created: its data lives in
    data_dir (made by install, owned by it)."""
    return [
        "useradd",
        "--system",
        "--user-group",
        "--home-dir",
        str(spec.data_dir),
        "--no-create-home",
        "--shell",
        "/usr/sbin/nologin",
        spec.user,
    ]


# -- the host --------------------------------------------------------------------------------


class HostCommandError(Exception):
    """A command install or uninstall ran (useradd, systemctl) failed or is missing."""


Runner = Callable[[Sequence[str]], None]


def run_command(argv: Sequence[str]) -> None:
    """Run ``argv``; HostCommandError with its last stderr line when it fails."""
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    except OSError as exc:
        raise HostCommandError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
    if proc.returncode != 0:
        said = (proc.stderr.strip().splitlines() or [""])[-1]
        raise HostCommandError(
            f"`{' '.join(argv)}` failed (exit {proc.returncode})" + (f": {said}" if said else "")
        )


@dataclass(frozen=True)
class Account:
    uid: int
    gid: int
    group: str


def lookup_account(name: str) -> Account | None:
    import grp  # POSIX only; this module is imported on Windows too
    import pwd

    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    try:
        group = grp.getgrgid(entry.pw_gid).gr_name
    except KeyError:
        group = str(entry.pw_gid)
    return Account(entry.pw_uid, entry.pw_gid, group)


def systemd_booted() -> bool:
    """Whether systemd is the running service manager, as sd_booted(3) tells it."""
    return Path("/run/systemd/system").is_dir()


def pid1_name() -> str:
    try:
        return Path("/proc/1/comm").read_text().strip()
    except OSError:
        return "unknown"


@dataclass(frozen=True)
class Host:
    """Where install and uninstall act. The defaults are this machine; ``manage=False``
    (``--root DIR``, for packagers) only writes the unit file: no user, no directories,
    no systemctl."""

    unit_dir: Path = UNIT_DIR
    manage: bool = True
    booted: bool = field(default_factory=systemd_booted)
    run: Runner = run_command
    lookup: Callable[[str], Account | None] = lookup_account

    @property
    def unit_path(self) -> Path:
        return self.unit_dir / UNIT_NAME


@dataclass
class Report:
    """What install or uninstall did (stdout) and what the operator must look at (stderr)."""

    done: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# -- install, uninstall ----------------------------------------------------------------------


def install(spec: UnitSpec, host: Host) -> Report:
    """Make the user and the keeper's own directories, write the unit, enable and start it.

    The keeper's directories (data_dir, the node's config dir) are made when missing and
    given to the user. Existing directories, and the node's storage dirs, are never
    chowned (a storage dir can hold terabytes the operator set up): the report warns when
    one belongs to someone else, with the command that gives it over.
    """
    text = render_unit(spec)  # first: a unit that cannot be written changes nothing
    report = Report()
    if host.manage:
        account = _ensure_user(spec, host, report)
        _ensure_dirs(spec, account, report)
        _check_reachable(spec, account, report)
    old = _read(host.unit_path)
    host.unit_dir.mkdir(parents=True, exist_ok=True)
    write_durably(host.unit_path, text.encode(), mode=0o644)
    if old == text:
        report.done.append(f"{host.unit_path} is up to date")
    else:
        report.done.append(f"wrote {host.unit_path}")
    enable = f"systemctl daemon-reload && systemctl enable --now {UNIT_NAME}"
    if not host.manage:
        report.done.append(f"not enabled (--root): on the installed system run `{enable}`")
    elif not host.booted:
        report.warnings.append(
            f"systemd is not running here (PID 1 is {pid1_name()!r}): the unit is written but "
            f"not enabled or started; on a machine booted with systemd run `{enable}`"
        )
    else:
        try:
            _enable(host, restart=old is not None and old != text, report=report)
        except HostCommandError as exc:
            raise HostCommandError(
                f"{exc} (the unit is written to {host.unit_path}; see `systemctl status "
                f"{UNIT_NAME}` and `journalctl -u {UNIT_NAME}`)"
            ) from None
        report.done.append(f"follow it with `journalctl -u {UNIT_NAME} -f`")
    return report


def _enable(host: Host, restart: bool, report: Report) -> None:
    host.run(["systemctl", "daemon-reload"])
    if restart:
        # enable --now leaves a running service on its old definition.
        host.run(["systemctl", "enable", UNIT_NAME])
        host.run(["systemctl", "restart", UNIT_NAME])
        report.done.append(f"enabled {UNIT_NAME} and restarted it with the new unit")
    else:
        host.run(["systemctl", "enable", "--now", UNIT_NAME])
        report.done.append(f"enabled and started {UNIT_NAME}")


def _ensure_user(spec: UnitSpec, host: Host, report: Report) -> Account:
    account = host.lookup(spec.user)
    if account is None:
        host.run(useradd_argv(spec))
        account = host.lookup(spec.user)
        if account is None:
            raise HostCommandError(f"useradd ran, but there is no user {spec.user!r} now")
        report.done.append(f"created the system user {spec.user}")
    return account


def _ensure_dirs(spec: UnitSpec, account: Account, report: Report) -> None:
    for path in spec.owned_dirs:
        if not path.exists():
            path.mkdir(mode=0o750, parents=True)
            os.chown(path, account.uid, account.gid)
            report.done.append(f"created {path} (owner {spec.user})")
    for path in dict.fromkeys((*spec.owned_dirs, *spec.storage_dirs)):
        owner = path.stat().st_uid
        if owner != account.uid:
            report.warnings.append(
                f"{path} belongs to uid {owner}, not {spec.user}: the service cannot write "
                f"there; give it over with `chown -R {spec.user}:{spec.group} {path}`"
            )


def _check_reachable(spec: UnitSpec, account: Account, report: Report) -> None:
    """Warn when the user cannot run the interpreter or read the config: every start of
    the unit would fail (an interpreter in a venv under /root, a config made 0600)."""
    for path, bit, fix in (
        *((p, 1, "install nodekeeper where every user can run it, e.g. a venv in /opt")
          for p in (spec.python, *spec.read_paths)),
        (spec.config, 4, f"e.g. `chgrp {spec.group} {spec.config}` and `chmod g+r` it"),
    ):  # fmt: skip
        blocked = blocked_for(path, account, bit)
        if blocked is not None:
            report.warnings.append(
                f"{spec.user} cannot reach {path} ({blocked} stops it): the service would "
                f"not start; {fix}"
            )


def blocked_for(path: Path, account: Account, bit: int) -> Path | None:
    """The first of ``path``'s directories, or ``path`` itself (needing ``bit``: 4 read,
    1 execute), that ``account`` may not pass, by owner, group and other mode bits (ACLs
    and supplementary groups are not looked at), or None."""
    if account.uid == 0:
        return None
    for part, need in [*((d, 1) for d in reversed(path.parents)), (path, bit)]:
        try:
            st = part.stat()
        except OSError:
            return part
        shift = 6 if st.st_uid == account.uid else 3 if st.st_gid == account.gid else 0
        if not (st.st_mode >> shift) & need:
            return part
    return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def uninstall(host: Host) -> Report:
    """Stop and disable the service, remove the unit; the user and every directory stay."""
    report = Report()
    text = _read(host.unit_path)
    if text is None:
        report.done.append(f"{host.unit_path} does not exist: nothing to uninstall")
        return report
    if host.manage and host.booted:
        host.run(["systemctl", "disable", "--now", UNIT_NAME])
        report.done.append(f"stopped and disabled {UNIT_NAME}")
    host.unit_path.unlink()
    fsync_dir(host.unit_dir)
    report.done.append(f"removed {host.unit_path}")
    if host.manage and host.booted:
        host.run(["systemctl", "daemon-reload"])
    settings = unit_settings(text)
    kept = [f"the user {u}" for u in settings.get("User", [])]
    kept += [p for value in settings.get("ReadWritePaths", []) for p in value.split()]
    if kept:
        report.done.append(f"kept {', '.join(kept)}: remove them by hand once the node is gone")
    return report


def unit_settings(text: str) -> dict[str, list[str]]:
    """``Key=value`` lines of a unit (any section), values in order of appearance."""
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")) or "=" not in line:
            continue
        key, _, value = line.partition("=")
        settings.setdefault(key.strip(), []).append(value.strip())
    return settings
