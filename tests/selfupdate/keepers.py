"""Keeper releases for the self-update tests, built as real zips by the release builder.

``build_keeper(kind, version, out_dir)`` builds ``nodekeeper_<version>.zip`` whose entry
module ``nodekeeper_fixture`` (shipped in the zip) wraps the real ``nodekeeper.selfupdate.entry``:

- ``good``: the real keeper, plus a thread that stands in for the update machine: when the
  file named by ``$NODEKEEPER_TEST_TRIGGER`` appears it calls
  ``nodekeeper.selfupdate.handover.hand_over`` with what the file says and writes the result next
  to it (``<trigger>.result``);
- ``exit_at_start``: exits 3 at once, before the keeper starts;
- ``silent``: the real keeper whose status API accepts connections and never answers;
- ``broken_version``: ``version`` prints nothing and exits 1 (fails preflight).

The keeper has no fault switches: faults live in the fixture module only.
``install(zip, versions_dir)`` unzips into ``versions_dir/<version>`` like the updater.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from nodekeeper.release import build_artifact
from nodekeeper.version.manifest import MANIFEST_NAME, manifest_for_zip

ENTRY_MODULE = "nodekeeper_fixture"
TRIGGER_ENV = "NODEKEEPER_TEST_TRIGGER"
KINDS = ("good", "exit_at_start", "silent", "broken_version")

_ENTRY = '''\
"""Test fixture entry (tests/selfupdate/keepers.py): the real keeper, {kind}."""

import asyncio
import json
import os
import signal
import sys
import threading
import time

KIND = {kind!r}


def stop_self():
    """The keeper's own stop signal: SIGTERM on POSIX; on Windows (no SIGTERM: os.kill
    would terminate) the SIGINT handler the keeper installs there."""
    if os.name == "nt":
        signal.raise_signal(signal.SIGINT)
    else:
        os.kill(os.getpid(), signal.SIGTERM)


def watch_trigger(path):
    """Stand-in for the update machine: hand over when the test drops the trigger file."""
    from nodekeeper.selfupdate import handover

    while True:
        try:
            with open(path) as fh:
                request = json.load(fh)
        except (FileNotFoundError, ValueError):
            time.sleep(0.05)
            continue
        os.unlink(path)
        # The result is written before this keeper is told to stop: stopping it ends this
        # (daemon) thread with the process, and under load it could end before the write.
        stopping = []
        try:
            handover.hand_over(
                request["install_dir"],
                request["version"],
                shutdown=lambda: stopping.append(True),
            )
            result = {{"ok": True}}
        except handover.SelfUpdateError as exc:
            result = {{"ok": False, "error": str(exc)}}
        except Exception as exc:  # anything else is the test's to see, not a silent thread
            result = {{"ok": False, "error": repr(exc)}}
        with open(path + ".result.tmp", "w") as fh:
            json.dump(result, fh)
        os.replace(path + ".result.tmp", path + ".result")
        if stopping:
            stop_self()


def silence_status_api():
    import nodekeeper.keeper.api as api

    async def never_answers(reader, writer):
        await asyncio.Event().wait()

    async def serve_status(host, port, *_more, **_named):  # the snapshot, and what came later
        return await asyncio.start_server(never_answers, host, port)

    api.serve_status = serve_status


def main():
    if KIND == "broken_version" and sys.argv[1:2] == ["version"]:
        return 1
    if KIND == "exit_at_start" and sys.argv[1:2] != ["version"]:
        print("fixture: keeper exits at start", file=sys.stderr, flush=True)
        return 3
    if KIND == "silent":
        silence_status_api()
    trigger = os.environ.get({trigger_env!r})
    if trigger and KIND == "good":
        threading.Thread(target=watch_trigger, args=(trigger,), daemon=True).start()
    from nodekeeper.selfupdate.entry import main as launched_main

    return launched_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
'''


def build_keeper(kind: str, version: str, out_dir: Path) -> Path:
    if kind not in KINDS:
        raise ValueError(f"unknown fixture kind {kind!r}")
    source = _ENTRY.format(kind=kind, trigger_env=TRIGGER_ENV)
    return build_artifact(
        version,
        Path(out_dir) / kind,
        module=ENTRY_MODULE,
        extra_files={f"{ENTRY_MODULE}.py": source.encode()},
    )


def install(zip_path: Path, versions_dir: Path) -> Path:
    """Unzip like the updater does, into ``versions_dir/<version>``."""
    with zipfile.ZipFile(zip_path) as zf:
        manifest = manifest_for_zip(zf.namelist(), zf.read(MANIFEST_NAME))
        assert manifest.version is not None
        target = Path(versions_dir) / manifest.version
        zf.extractall(target)
    return target


def trigger(path: Path, install_dir: Path, version: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"install_dir": str(install_dir), "version": version}))
    tmp.replace(path)
