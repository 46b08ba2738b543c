"""tuf.ngclient in the Windows runtime, inside Wine (decision 086).

    python.exe tuf_side.py METADATA_DIR SERVER_URL ROOT_FILE TARGET

Runs python-tuf's own client (its default urllib3 fetcher) against a real TUF repository
served from the Linux side on loopback (tests/windows/tuf_metadata.py), in the places and
the orders the keeper meets on Windows, and prints one line ``RESULT {json}`` with what it
saw; the pytest side (test_tuf_wine.py) makes the assertions.

1. ``first``: a new install. The Updater starts from the shipped root (version 1), follows
   the rotation to ``2.root.json``, verifies timestamp, snapshot and targets and finds
   the target. tuf keeps every root in ``root_history/`` and points ``root.json`` at the
   newest with ``os.symlink`` (falling back to ``os.link`` on winerror 1314).
2. ``upgrade``: the same cache, a new Updater bootstrapped with the same old root (an MSI
   upgrade that ships an older root than the cache holds), and a server that serves no
   root files: it verifies only if the rotated root came from the cache.
3. ``no_symlinks``: a fresh cache where ``os.symlink`` fails as it does on Windows for an
   account without SeCreateSymbolicLinkPrivilege (winerror 1314, raised here by a stand-in:
   Wine has no such privilege check), so tuf's hard-link fallback runs for real.
4. ``fresh_without_roots``: the control for 2: a fresh cache and no root files on the
   server cannot verify the timestamp (signed by the rotated key).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from typing import Any

from tuf.api import exceptions
from tuf.ngclient import Updater

from nodekeeper.signing.layout import METADATA_PATH

NO_ROOTS_PATH = "/no-roots" + METADATA_PATH  # tests/windows/tuf_metadata.py
PRIVILEGE_NOT_HELD = 1314


def digest(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


def cache(metadata_dir: str) -> dict[str, Any]:
    """What tuf left in its cache: the files, the root history, and root.json as a path
    (exists, a symlink, a hard link, whose bytes)."""
    root_json = os.path.join(metadata_dir, "root.json")
    history = os.path.join(metadata_dir, "root_history")
    return {
        "files": sorted(os.listdir(metadata_dir)),
        "root_history": {
            name: digest(os.path.join(history, name)) for name in sorted(os.listdir(history))
        },
        "root_json": {
            "exists": os.path.exists(root_json),
            "lexists": os.path.lexists(root_json),
            "symlink": os.path.islink(root_json),
            "links": os.stat(root_json).st_nlink if os.path.exists(root_json) else 0,
            "sha256": digest(root_json),
        },
    }


def run(metadata_dir: str, base_url: str, root: bytes, target: str) -> dict[str, Any]:
    """One keeper check: a new Updater, refresh, look the target up."""
    os.makedirs(metadata_dir, exist_ok=True)
    started = time.monotonic()
    try:
        updater = Updater(metadata_dir=metadata_dir, metadata_base_url=base_url, bootstrap=root)
        updater.refresh()
        info = updater.get_targetinfo(target)
    except (exceptions.RepositoryError, exceptions.DownloadError, OSError) as exc:
        return {"error": type(exc).__name__, "message": str(exc), "cache": cache(metadata_dir)}
    found = None
    if info is not None:
        found = {
            "length": info.length,
            "sha256": info.hashes.get("sha256"),
            "custom": info.unrecognized_fields.get("custom"),
        }
    return {"target": found, "seconds": round(time.monotonic() - started, 2),
            "cache": cache(metadata_dir)}  # fmt: skip


def runtime() -> dict[str, str]:
    """The versions that did the work, and the file cryptography's signatures ran in."""
    import cryptography
    import securesystemslib
    import tuf
    import urllib3
    from cryptography.hazmat.bindings import _rust

    return {"tuf": tuf.__version__, "securesystemslib": securesystemslib.__version__,
            "urllib3": urllib3.__version__, "cryptography": cryptography.__version__,
            "binding": os.path.basename(_rust.__file__)}  # fmt: skip


def main() -> None:
    base, server, root_file, target = sys.argv[1:5]
    with open(root_file, "rb") as f:
        root = f.read()
    result: dict[str, Any] = {}
    first_dir = os.path.join(base, "installed", "tuf")
    result["first"] = run(first_dir, server + METADATA_PATH, root, target)
    result["upgrade"] = run(first_dir, server + NO_ROOTS_PATH, root, target)

    real_symlink = os.symlink

    def refused(*args: Any, **kwargs: Any) -> None:
        raise OSError(None, "A required privilege is not held by the client", None,
                      PRIVILEGE_NOT_HELD)  # fmt: skip

    os.symlink = refused  # type: ignore[assignment]
    try:
        no_symlinks_dir = os.path.join(base, "no-symlinks", "tuf")
        result["no_symlinks"] = run(no_symlinks_dir, server + METADATA_PATH, root, target)
    finally:
        os.symlink = real_symlink
    fresh_dir = os.path.join(base, "fresh", "tuf")
    result["fresh_without_roots"] = run(fresh_dir, server + NO_ROOTS_PATH, root, target)
    result["runtime"] = runtime()
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
