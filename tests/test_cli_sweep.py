"""Every command, given what operators get wrong, ends with one clear line and an exit code.

The commands come from walking the argparse trees (tests/cli_tree.py), and the cases from
rules over each command's arguments, so a command added later is swept without anyone
listing it:

- an unknown flag, a bad value for a typed or choice option, missing positionals:
  argparse's usage and exit 2;
- for each file option: a missing file, a directory where the file should be, a file with
  bytes that are no config/token at all, an unreadable file (skipped as root);
- for each directory option: a regular file where the directory should be;
- for each URL option: a value that is not a URL, and a server that is down (a free
  loopback port nobody listens on).

Each must exit 1 or 2 (the storage node: one of its documented exit codes), print no
traceback, say it in one line on stderr that names what was wrong (the path, the port, the
flag), and leave the file it was given as it was. Commands that would run a service when
a case is not refused (`run`, `server run`, `quickstart`, the launcher, the node's `run`)
are run as child processes with a deadline; everything else in-process through main().
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from nodekeeper.version.manifest import ArtifactManifest, PythonRun, render_manifest
from storagenode import exitcodes
from tests.cli_tree import Command, leaf_commands
from tests.support import free_port

# A refused command exits within seconds; a loaded 2-core machine starts a Python with
# FastAPI in up to ~10 s. Only a command that wrongly starts serving waits this out.
DEADLINE = 90.0

GARBAGE_BYTES = b"\xff\xfe\x00\x01garbage\x00\x9f not a config \xc3\x28\n"

NODEKEEPER_CODES = {1, 2}
# The node's codes are its contract with the keeper (storagenode/exitcodes.py).
STORAGENODE_CODES = {
    exitcodes.FAILURE,
    exitcodes.USAGE,
    exitcodes.SETUP_REFUSED,
    exitcodes.STORAGE_UNAVAILABLE,
    exitcodes.NOT_CONFIGURED,
}

# Commands that serve until stopped when nothing stops them first.
LONG_RUNNING = {
    "nodekeeper run",
    "nodekeeper server run",
    "nodekeeper quickstart",
    "storagenode run",
    "nodekeeper-launcher",
    "python -m nodekeeper.keeper",
}

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@dataclass
class Invocation:
    argv: list[str]
    needle: str  # what the error line must mention
    watched: Path | None = None  # a path the command must leave as it was
    argparse_error: bool = False
    env: dict[str, str] = field(default_factory=dict)


Build = Callable[[Path], Invocation]


@dataclass(frozen=True)
class Case:
    command: Command
    what: str
    build: Build

    @property
    def id(self) -> str:
        return f"{self.command.name}: {self.what}"


# -- valid values for everything a case is not about ---------------------------------------


def _valid(action: argparse.Action, tmp: Path) -> str:
    """A value that is fine for ``action``, so that a case fails only for what it is about."""
    if action.dest == "artifact":
        return f"linux_amd64={_artifact(tmp)}"
    if action.dest in ("targets_key", "previous", "root_file", "trusted_root"):  # TUF (084)
        offline = _tuf_keys(tmp)
        return str(offline / ("targets-1.pem" if action.dest == "targets_key" else "1.root.json"))
    known = {
        "process": "storagenode",
        "version": "1.2.3",
        "percent": "50",
        "storage_dir": str(tmp / "pieces"),
        "allocated": "1 MB",
    }
    return known.get(action.dest, "x")


def _tuf_keys(tmp: Path) -> Path:
    """Real TUF keys and a root (decision 084), made once per case; their offline dir."""
    from nodekeeper.cli import main

    offline = tmp / "tuf-offline"
    if not offline.is_dir():
        with contextlib.redirect_stdout(io.StringIO()):
            argv = ["keys", "create", "--offline-dir", str(offline), "--no-passphrase"]
            assert main([*argv, "--online-dir", str(tmp / "tuf-online")]) == 0
    return offline


def _artifact(tmp: Path) -> Path:
    """A valid release zip of storagenode 1.2.3 (the documented artifact format)."""
    path = tmp / "storagenode_linux_amd64.zip"
    manifest = ArtifactManifest("storagenode", "1.2.3", PythonRun("storagenode"))
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("nodekeeper-artifact.json", render_manifest(manifest))
        zf.writestr("storagenode/__main__.py", "print('hello')\n")
    return path


def _base_argv(command: Command, tmp: Path, skip: argparse.Action | None) -> list[str]:
    """The subcommand words, every required argument, and the options that keep a case
    away from real servers, real ports and the operator's own directories."""
    argv = list(command.path)
    safe = {
        "--server": f"http://127.0.0.1:{free_port()}",
        "--listen": f"127.0.0.1:{free_port()}",
        "--data-dir": str(tmp / "data"),
        "--plain": None,
    }
    for action in command.options():
        if action is skip:
            continue
        flag = action.option_strings[-1]
        if flag in safe:
            argv += [flag] if safe[flag] is None else [flag, str(safe[flag])]
        elif action.required:
            argv += [flag, _valid(action, tmp)]
    return argv


def _with(command: Command, tmp: Path, action: argparse.Action, *values: str) -> list[str]:
    argv = _base_argv(command, tmp, skip=action)
    if action.option_strings:
        argv += [action.option_strings[-1], *values]
    positionals = [(values[0] if p is action else _valid(p, tmp)) for p in command.positionals()]
    return argv + positionals


def _all_positionals(command: Command, tmp: Path) -> list[str]:
    return [_valid(p, tmp) for p in command.positionals()]


# -- the rules ----------------------------------------------------------------------------


def _is_file_option(action: argparse.Action) -> bool:
    return action.type is Path and not action.dest.endswith("_dir")


def _is_dir_option(action: argparse.Action) -> bool:
    return action.type is Path and action.dest.endswith("_dir")


def _is_url_option(action: argparse.Action) -> bool:
    return action.dest in ("server", "url", "db", "public_url")


def _is_typed(action: argparse.Action) -> bool:
    return action.choices is not None or action.type not in (None, str, Path)


def _cases(command: Command) -> Iterator[Case]:
    def case(what: str, build: Build) -> Case:
        return Case(command, what, build)

    yield case(
        "unknown flag",
        lambda tmp: Invocation(
            [*_base_argv(command, tmp, None), "--no-such-flag", *_all_positionals(command, tmp)],
            "--no-such-flag",
            argparse_error=True,
        ),
    )
    if command.positionals():
        yield case(
            "positional arguments missing",
            lambda tmp: Invocation(_base_argv(command, tmp, None), "", argparse_error=True),
        )
    for action in command.positionals() + command.options():
        label = action.option_strings[-1] if action.option_strings else action.dest
        if _is_typed(action):
            yield case(
                f"{label} garbage",
                lambda tmp, a=action: Invocation(
                    _with(command, tmp, a, "garbage"), "garbage", argparse_error=True
                ),
            )
        if _is_file_option(action):
            yield from _file_cases(command, action, label)
        if _is_dir_option(action):

            def file_for_dir(tmp: Path, a: argparse.Action = action) -> Invocation:
                path = tmp / "a-file"
                path.write_text("I am a file\n")
                return Invocation(_with(command, tmp, a, str(path)), str(path), watched=path)

            yield case(f"{label} is a file", file_for_dir)
        if _is_url_option(action):
            yield case(
                f"{label} not a URL",
                lambda tmp, a=action: Invocation(_with(command, tmp, a, "notaurl"), "notaurl"),
            )
            if action.dest != "public_url":  # the only URL a command does not call

                def down(tmp: Path, a: argparse.Action = action) -> Invocation:
                    port = free_port()
                    url = f"http://127.0.0.1:{port}"
                    if a.dest == "db":
                        url = f"postgresql+psycopg://nobody@127.0.0.1:{port}/nodekeeper"
                        # Without waiting: a service retries a database that is down
                        # (--db-wait, a warning each time); the one-line failure is the end.
                        argv = [*_with(command, tmp, a, url), "--db-wait", "0"]
                        return Invocation(argv, str(port))
                    return Invocation(_with(command, tmp, a, url), str(port))

                yield case(f"{label} server down", down)
        if action.dest == "artifact":
            yield from _artifact_cases(command, action)


def _file_cases(command: Command, action: argparse.Action, label: str) -> Iterator[Case]:
    def missing(tmp: Path) -> Invocation:
        path = tmp / "no-such-file.toml"
        return Invocation(_with(command, tmp, action, str(path)), str(path), watched=path)

    def directory(tmp: Path) -> Invocation:
        path = tmp / "a-directory"
        path.mkdir()
        return Invocation(_with(command, tmp, action, str(path)), str(path), watched=path)

    def garbage(tmp: Path) -> Invocation:
        path = tmp / "garbage.toml"
        path.write_bytes(GARBAGE_BYTES)
        return Invocation(_with(command, tmp, action, str(path)), str(path), watched=path)

    def unreadable(tmp: Path) -> Invocation:
        if IS_ROOT:
            pytest.skip(
                "running as root: chmod 000 does not stop root from reading; the "
                "directory and garbage cases cover a file that cannot be used"
            )
        path = tmp / "unreadable.toml"
        path.write_text("")
        path.chmod(0)
        return Invocation(_with(command, tmp, action, str(path)), str(path), watched=path)

    yield Case(command, f"{label} missing", missing)
    yield Case(command, f"{label} is a directory", directory)
    yield Case(command, f"{label} garbage bytes", garbage)
    yield Case(command, f"{label} unreadable", unreadable)


def _artifact_cases(command: Command, action: argparse.Action) -> Iterator[Case]:
    def spec(path_of: Callable[[Path], Path]) -> Build:
        def build(tmp: Path) -> Invocation:
            path = path_of(tmp)
            return Invocation(
                _with(command, tmp, action, f"linux_amd64={path}"), str(path), watched=path
            )

        return build

    def a_directory(tmp: Path) -> Path:
        (tmp / "a-directory").mkdir()
        return tmp / "a-directory"

    yield Case(command, "--artifact missing", spec(lambda tmp: tmp / "no-such.zip"))
    yield Case(command, "--artifact is a directory", spec(a_directory))
    yield Case(
        command,
        "--artifact without OS_ARCH=",
        lambda tmp: Invocation(_with(command, tmp, action, "just-a-path.zip"), "OS_ARCH"),
    )


def _explicit_cases() -> Iterator[Case]:
    """What the rules cannot know: commands that read a directory someone else made."""
    for command in leaf_commands():
        if command.name in ("storagenode run", "storagenode info"):
            (config_dir,) = (a for a in command.options() if a.dest == "config_dir")

            def missing(tmp: Path, c: Command = command, a: argparse.Action = config_dir):
                path = tmp / "no-such-dir"
                return Invocation(_with(c, tmp, a, str(path)), str(path), watched=path)

            yield Case(command, "--config-dir missing", missing)
        if command.name == "nodekeeper-launcher":

            def no_python(tmp: Path) -> Invocation:
                # Every keeper start would fail: refused at once, not restarted forever.
                config = tmp / "keeper.toml"
                config.write_text(f"data_dir = '{tmp / 'data'}'\n")
                python = tmp / "no-such-python"
                return Invocation(["--config", str(config), "--python", str(python)], str(python))

            yield Case(command, "--python missing", no_python)


def _params() -> list:
    cases = [c for command in leaf_commands() for c in _cases(command)]
    cases += list(_explicit_cases())
    return [pytest.param(case, id=case.id) for case in cases]


# -- running ------------------------------------------------------------------------------


@dataclass
class Outcome:
    code: int | None  # None: still running at the deadline (killed)
    out: str
    err: str


def _env(command: Command, tmp: Path) -> dict[str, str]:
    """Default directories inside the test's tmp dir, never the operator's own; for the
    admin commands (those with --server) a token, so that they get as far as the server.
    Not for the others: `server run` would take it instead of --admin-token-file."""
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    env = {
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_STATE_HOME": str(home / "state"),
    }
    if any(action.dest == "server" for action in command.options()):
        env["NODEKEEPER_ADMIN_TOKEN"] = "sweep-token-0123456789abcdef"
    return env


def _in_process(case: Case, argv: list[str], capsys: pytest.CaptureFixture[str]) -> Outcome:
    import logging

    # The node's logger writes to the stderr of the moment it was first configured.
    for handler in logging.getLogger("storagenode").handlers[:]:
        logging.getLogger("storagenode").removeHandler(handler)
    capsys.readouterr()
    try:
        code: int | None = case.command.entry.main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return Outcome(code, out, err)


def _child(case: Case, argv: list[str], env: dict[str, str]) -> Outcome:
    proc = subprocess.Popen(
        [sys.executable, "-m", case.command.entry.module, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **env},
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=DEADLINE)
        return Outcome(proc.returncode, out, err)
    except subprocess.TimeoutExpired:
        return Outcome(None, *_kill_tree(proc))
    finally:
        if proc.poll() is None:
            _kill_tree(proc)


def _kill_tree(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """Kill the command and everything it started (a node in its own process group)."""
    try:
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    for p in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(family, timeout=DEADLINE)
    return proc.communicate()


def _snapshot(path: Path | None) -> object:
    if path is None:
        return None
    if path.is_dir():
        return ("dir", sorted(p.name for p in path.iterdir()))
    if path.is_file():
        return ("file", path.read_bytes())
    return "absent"


@pytest.mark.parametrize("case", _params())
def test_cli_refuses_in_one_clear_line(
    case: Case,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = _env(case.command, tmp_path)
    monkeypatch.delenv("NODEKEEPER_SERVER", raising=False)
    monkeypatch.delenv("NODEKEEPER_ADMIN_TOKEN", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    inv = case.build(tmp_path)
    before = _snapshot(inv.watched)

    if inv.argparse_error or case.command.name not in LONG_RUNNING:
        outcome = _in_process(case, inv.argv, capsys)
    else:
        outcome = _child(case, inv.argv, env)

    shown = f"exit {outcome.code}\nstdout:\n{outcome.out}\nstderr:\n{outcome.err}"
    assert outcome.code is not None, f"still running after {DEADLINE:.0f} s\n{shown}"
    assert "Traceback" not in outcome.out + outcome.err, shown
    prog = case.command.entry.name
    if inv.argparse_error:
        assert outcome.code == 2, shown
        assert "usage:" in outcome.err, shown
        last = outcome.err.strip().splitlines()[-1]
        assert ": error: " in last and inv.needle in last, shown
    else:
        codes = STORAGENODE_CODES if prog == "storagenode" else NODEKEEPER_CODES
        assert outcome.code in codes, shown
        lines = outcome.err.strip().splitlines()
        assert len(lines) == 1, f"want one line on stderr\n{shown}"
        assert inv.needle in lines[0], f"the line should name {inv.needle!r}\n{shown}"
    assert _snapshot(inv.watched) == before, f"{inv.watched} changed\n{shown}"
