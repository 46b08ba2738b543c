"""python-tuf's client in the Windows runtime under Wine, against real signed metadata served
from this side on loopback (decision 086; the Windows side is winside/tuf_side.py).

The keeper's own verification ("tufclient", decision 085) wraps the same Updater; what is
proven here is the part only Windows can break: the runtime's tuf, securesystemslib,
urllib3 and cryptography (its win_amd64 wheel) verify ed25519 signatures, and the metadata
cache on drive C: keeps the rotated root across a new Updater, whatever Windows does with
tuf's ``root.json`` symlink.
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
from pathlib import Path

import pytest

from tests.windows.tuf_metadata import PLATFORM, PROCESS, VERSION, make_repository, serve
from tests.windows.wine import WineRuntime, windows_path

pytestmark = pytest.mark.wine


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_tuf_ngclient_follows_a_root_rotation_and_keeps_it_in_the_cache_under_wine(
    wine: WineRuntime, tmp_path: Path
) -> None:
    repo = make_repository(tmp_path / "metadata")
    (tmp_path / "trusted-root.json").write_bytes(repo.root_v1)
    # On drive C: (the prefix's own directory), like <ProgramData>\nodekeeper\state\tuf.
    name = f"nk-tuf-{uuid.uuid4().hex[:8]}"
    linux_dir = Path(wine.env["WINEPREFIX"]) / "drive_c" / "ProgramData" / name
    script = Path(__file__).parent / "winside" / "tuf_side.py"
    try:
        with serve(repo) as server:
            done = wine.run_script(script, f"C:\\ProgramData\\{name}", server.url,
                                   windows_path(tmp_path / "trusted-root.json"), repo.target,
                                   timeout=180)  # fmt: skip
            assert done.returncode == 0, done.output
            seen = done.result()
            requests = list(server.requests)
    finally:
        shutil.rmtree(linux_dir, ignore_errors=True)

    signed = {"length": repo.length, "sha256": repo.sha256,
              "custom": {"process": PROCESS, "version": VERSION, "platform": PLATFORM}}  # fmt: skip
    roots = {"1.root.json": sha256(repo.root_v1), "2.root.json": sha256(repo.root_v2)}

    # 1. A new install: the rotation followed from the server, the target found.
    first = seen["first"]
    assert first.get("target") == signed, first
    assert first["cache"]["root_history"] == roots
    assert {"timestamp.json", "snapshot.json", "targets.json"} <= set(first["cache"]["files"])
    assert "/tuf/metadata/2.root.json" in requests and "/tuf/metadata/3.root.json" in requests

    # 2. A new Updater with the old shipped root (an MSI upgrade), no roots on the server:
    # verified with the rotated root from root_history/, which tuf never asked for again.
    upgrade = seen["upgrade"]
    assert upgrade.get("target") == signed, upgrade
    assert upgrade["cache"]["root_history"] == roots
    start = next(n for n, path in enumerate(requests) if path.startswith("/no-roots/"))
    end = next(n for n in range(start, len(requests)) if not requests[n].startswith("/no-roots/"))
    # (snapshot and targets: still valid in the cache, not fetched again)
    assert requests[start:end] == [
        "/no-roots/tuf/metadata/3.root.json",
        "/no-roots/tuf/metadata/timestamp.json",
    ], requests

    # root.json. Wine 8's CreateSymbolicLinkW is a stub that reports success and creates
    # nothing, so under Wine there is no root.json at all; a real Windows gives the
    # LocalSystem service a real symlink. Either way nothing reads it: tuf does only when
    # bootstrap is None, and the keeper always bootstraps from the shipped root.
    link = first["cache"]["root_json"]
    assert not link["lexists"] or link["sha256"] == roots["2.root.json"], link

    # 3. Symlinks refused as for an account without the privilege (winerror 1314): tuf's
    # fallback makes root.json a hard link to the newest root, and all still verifies.
    no_symlinks = seen["no_symlinks"]
    assert no_symlinks.get("target") == signed, no_symlinks
    hard = no_symlinks["cache"]["root_json"]
    assert hard["exists"] and not hard["symlink"] and hard["links"] >= 2, hard
    assert hard["sha256"] == roots["2.root.json"]

    # 4. The control for 2: without the cached rotated root the timestamp does not verify.
    fresh = seen["fresh_without_roots"]
    assert fresh.get("error") == "UnsignedMetadataError", fresh
    assert "timestamp" in fresh["message"]

    # What did it: the runtime's own packages (from pyproject's dependencies, with Windows
    # markers: scripts/windows-runtime.py), cryptography's signatures in its Windows wheel.
    runtime = seen["runtime"]
    assert runtime["tuf"].startswith("7.") and runtime["securesystemslib"].startswith("1.")
    assert runtime["urllib3"].startswith("2.") and runtime["binding"] == "_rust.pyd", runtime
    (wheel,) = (wine.runtime / "Lib" / "site-packages").glob("cryptography-*.dist-info/WHEEL")
    assert "-win_amd64" in wheel.read_text(), wheel.read_text()
