"""Release artifacts for tests: good versions and faulty ones, built as real zips.

The faults live in an entry module shipped inside the zip (``storagenode_fixture``) that
wraps the real node; the node's own code has no fault switches. Shared with the keeper's
tests:

    build_good(version, out_dir, extra_migration=0) -> Path
    build_faulty(kind, version, out_dir, *, extra_migration=0, **options) -> Path
    install(zip_path, dest_dir) -> Path
    node_argv(install_dir, *args, python=sys.executable) -> list[str]
"""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path
from typing import Any

from nodekeeper.version.manifest import MANIFEST_NAME, check_member_name, manifest_for_zip, run_argv
from storagenode.release import build_artifact

ENTRY_MODULE = "storagenode_fixture"

# kind -> what `storagenode run` does (every other command behaves normally unless noted)
FAULTY_KINDS: dict[str, str] = {
    "crash_at_start": "logs an ERROR line and dies with a traceback (exit 1) after "
    "`crash_after` s (default 0)",
    "hang_after_start": "serves normally, then `hang_after` s (default 1) after its first pulse "
    "every request "
    "(pulse and /shutdown included) blocks forever; with `ignore_stop` (default True) "
    "SIGTERM/CTRL_BREAK are ignored too, so only a kill ends it",
    "leak_memory": "serves normally while its memory grows by `leak_mb_per_s` MB/s (default "
    "20) up to `leak_limit_mb` (default 512)",
    "fail_migration": "adds two migrations: the first commits, the second fails half-way; "
    "exits 70 with the database one schema version ahead of the base",
    "exit_zero": "exits 0 at once without serving",
    "slow_migration": "adds a migration that takes `migration_seconds` s (default 3); a stop "
    "asked for meanwhile is honoured once it is done (exit 0, schema one ahead)",
    "slow_start": "waits `start_delay` s (default 3) before starting",
    "broken_version": "`version` prints nothing useful and exits 1 (preflight fails); "
    "`run` is normal",
}

_ENTRY_TEMPLATE = '''\
"""Test fixture entry (tests/artifacts.py): the real node with one fault around it."""

import json
import sys
import threading
import time

KIND = {kind!r}
EXTRA_MIGRATIONS = {extra}
OPTIONS = json.loads({options!r})


def _add_migrations():
    from storagenode import migrations as m

    for k in range(1, EXTRA_MIGRATIONS + 1):
        m.MIGRATIONS.append(
            m.Migration(
                len(m.MIGRATIONS) + 1,
                f"fixture extra {{k}}",
                m.sql(f"CREATE TABLE fixture_extra_{{k}} (id INTEGER PRIMARY KEY)"),
            )
        )
    if KIND == "fail_migration":
        m.MIGRATIONS.append(
            m.Migration(len(m.MIGRATIONS) + 1, "fixture half a", m.sql("CREATE TABLE half_a (x)"))
        )

        def half_way(conn):
            conn.execute("CREATE TABLE half_b (x)")
            raise RuntimeError("fixture: migration fails half-way")

        m.MIGRATIONS.append(m.Migration(len(m.MIGRATIONS) + 1, "fixture half b", half_way))
    if KIND == "slow_migration":

        def slow(conn):
            conn.execute("CREATE TABLE slow (x)")
            time.sleep(OPTIONS.get("migration_seconds", 3))

        m.MIGRATIONS.append(m.Migration(len(m.MIGRATIONS) + 1, "fixture slow", slow))


def _log(level, msg):
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    line = {{"time": now, "level": level, "msg": msg}}
    print(json.dumps(line), file=sys.stderr, flush=True)


def _hang_later(delay, ignore_stop):
    """Hang ``delay`` s after the first pulse is served, so a slow start under load
    cannot eat the healthy period a test (or the keeper) is meant to see."""
    from storagenode.control import ControlHandler
    from storagenode.public import PublicHandler
    from storagenode.state import StopRequest

    def blocked(self, *args):
        threading.Event().wait()

    def hang():
        for cls in (ControlHandler, PublicHandler):
            for name in ("do_GET", "do_POST", "do_PUT", "do_DELETE"):
                setattr(cls, name, blocked)
        if ignore_stop:
            StopRequest.request = lambda self, reason: None
        _log("WARNING", "fixture: node hangs now")

    healthy_get = ControlHandler.do_GET
    armed = threading.Lock()

    def first_pulse_arms(self):
        if armed.acquire(blocking=False):
            timer = threading.Timer(delay, hang)
            timer.daemon = True
            timer.start()
        return healthy_get(self)

    ControlHandler.do_GET = first_pulse_arms


def _leak(mb_per_s, limit_mb):
    hoard = []

    def grow():
        step = max(1, int(mb_per_s * 1024 * 1024 / 10))
        while len(hoard) * step < limit_mb * 1024 * 1024:
            hoard.append(b"\\x01" * step)  # written, so resident
            time.sleep(0.1)

    threading.Thread(target=grow, daemon=True).start()


def main():
    _add_migrations()
    args = sys.argv[1:]
    command = args[0] if args else ""
    if KIND == "broken_version" and command == "version":
        print("fixture: version is broken", file=sys.stderr)
        return 1
    if command == "run":
        if KIND == "crash_at_start":
            time.sleep(OPTIONS.get("crash_after", 0))
            _log("ERROR", "fixture: crashing at start")
            raise RuntimeError("fixture: crash at start")
        if KIND == "exit_zero":
            return 0
        if KIND == "slow_start":
            time.sleep(OPTIONS.get("start_delay", 3))
        if KIND == "hang_after_start":
            _hang_later(OPTIONS.get("hang_after", 1), OPTIONS.get("ignore_stop", True))
        if KIND == "leak_memory":
            _leak(OPTIONS.get("leak_mb_per_s", 20), OPTIONS.get("leak_limit_mb", 512))
    from storagenode.cli import main as node_main

    return node_main(args)


sys.exit(main())
'''


def _entry(kind: str, extra_migration: int, options: dict[str, Any]) -> dict[str, bytes]:
    source = _ENTRY_TEMPLATE.format(
        kind=kind, extra=int(extra_migration), options=json.dumps(options)
    )
    return {f"{ENTRY_MODULE}.py": source.encode("utf-8")}


def build_good(version: str, out_dir: Path, extra_migration: int = 0) -> Path:
    """A healthy release. ``extra_migration`` (a count; True means 1) adds migrations on
    top of the node's own: pass the same count to every later version that must keep
    reading the database, since an older schema count refuses a newer database."""
    if not extra_migration:
        return build_artifact(version, Path(out_dir))
    return build_artifact(
        version, Path(out_dir), module=ENTRY_MODULE, extra_files=_entry("good", extra_migration, {})
    )


def build_faulty(
    kind: str, version: str, out_dir: Path, *, extra_migration: int = 0, **options: Any
) -> Path:
    """A release that misbehaves as FAULTY_KINDS[kind] says. Its zip is named like a good
    one (storagenode_<version>.zip): give faulty builds their own out_dir or version."""
    if kind not in FAULTY_KINDS:
        raise ValueError(f"unknown fault {kind!r}; choose one of {sorted(FAULTY_KINDS)}")
    return build_artifact(
        version,
        Path(out_dir),
        module=ENTRY_MODULE,
        extra_files=_entry(kind, extra_migration, options),
    )


def install(zip_path: Path, dest_dir: Path) -> Path:
    """Unpack an artifact into ``dest_dir`` (created) after validating it; returns it."""
    dest_dir = Path(dest_dir)
    with zipfile.ZipFile(zip_path) as zf:
        names = zf.namelist()
        for name in names:
            check_member_name(name)
        manifest_for_zip(names, zf.read(MANIFEST_NAME) if MANIFEST_NAME in names else None)
        dest_dir.mkdir(parents=True, exist_ok=True)
        zf.extractall(dest_dir)
    return dest_dir


def node_argv(install_dir: Path, *args: str, python: str = sys.executable) -> list[str]:
    """The command that runs an installed artifact with ``args``."""
    install_dir = Path(install_dir)
    files = [p.relative_to(install_dir).as_posix() for p in install_dir.rglob("*") if p.is_file()]
    manifest_path = install_dir / MANIFEST_NAME
    data = manifest_path.read_bytes() if manifest_path.exists() else None
    return run_argv(manifest_for_zip(files, data), str(install_dir), python, args)
