"""SIGKILL a process that is downloading or unpacking, at random instants, many times.

After every kill: the ``.part`` holds a prefix of the artifact (resumable), and
``versions/<process>/`` holds nothing but ``.tmp-*`` leftovers or a complete install,
never a partial ``<version>``. Then the next attempt completes. The seed is printed so a
failure can be replayed (``NODEKEEPER_TEST_SEED``).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from nodekeeper.updater.download import DownloadSettings, download, make_client, part_path
from nodekeeper.updater.unpack import remove_leftovers, unpack
from nodekeeper.updater.verify import verify_download

from .conftest import artifact_for
from .httpserver import FileServer
from .zips import make_zip

ROOT = Path(__file__).resolve().parents[2]
KILLS = 5

DOWNLOAD = """
import sys
from pathlib import Path
from nodekeeper.updater.download import download, make_client
from nodekeeper.version.schema import Artifact
url, sha, size, part = sys.argv[1:]
with make_client() as c:
    download(c, Artifact(url=url, sha256=sha, size=int(size)), Path(part), free_space_margin=0)
"""

UNPACK = """
import sys
from pathlib import Path
from nodekeeper.updater.unpack import unpack
zip_path, versions = sys.argv[1:]
while True:  # install again and again, so a kill can land in any phase of it
    unpack(Path(zip_path), Path(versions), "storagenode", "1.2.3", free_space_margin=0)
"""


@pytest.fixture
def rng() -> random.Random:
    seed = int(os.environ.get("NODEKEEPER_TEST_SEED", random.randrange(2**32)))
    print(f"NODEKEEPER_TEST_SEED={seed}")
    return random.Random(seed)


def run_and_kill(code: str, args: list[str], after: float) -> int | None:
    """Start ``code``, SIGKILL it ``after`` s later; returns its exit code if it ended first."""
    proc = subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT)
    try:
        return proc.wait(after)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return None


def test_download_killed_at_random_instants(
    files: FileServer, tmp_path: Path, rng: random.Random
) -> None:
    data = os.urandom(6 * 1024 * 1024)
    url = files.add("/a.zip", data)
    files.rate = 6 * 1024 * 1024  # ~1 s of body for the whole file
    artifact = artifact_for(url, data)
    part = part_path(tmp_path / "downloads", "storagenode", "1.2.3", "linux_amd64")
    killed = 0
    for _ in range(KILLS):
        # Python's start-up and imports take ~0.3 s, then ~1 s of body.
        code = run_and_kill(
            DOWNLOAD, [url, artifact.sha256, str(len(data)), str(part)], rng.uniform(0.3, 1.0)
        )
        if code is None:
            killed += 1
        have = part.read_bytes() if part.exists() else b""
        assert data.startswith(have), "the .part must always be a prefix of the artifact"
        if len(have) == len(data):
            break
    assert killed
    files.rate = None
    with make_client(DownloadSettings()) as client:
        result = download(client, artifact, part, free_space_margin=0)
    assert result.resumed_from + result.fetched == len(data)
    assert verify_download(result, artifact).read_bytes() == data


def test_unpack_killed_at_random_instants(tmp_path: Path, rng: random.Random) -> None:
    entries = [(f"pkg/m{i:03}.py", os.urandom(16 * 1024)) for i in range(200)]
    z = make_zip(tmp_path / "a.zip", entries)
    with zipfile.ZipFile(z) as zf:
        expected = {i.filename: zf.read(i) for i in zf.infolist()}
    versions = tmp_path / "versions"
    proc_dir = versions / "storagenode"
    for _ in range(KILLS):
        assert run_and_kill(UNPACK, [str(z), str(versions)], rng.uniform(0.15, 0.9)) is None
        if not proc_dir.exists():
            continue
        for entry in proc_dir.iterdir():
            if entry.name == "1.2.3":  # complete whenever it exists
                got = {
                    p.relative_to(entry).as_posix(): p.read_bytes()
                    for p in entry.rglob("*")
                    if p.is_file()
                }
                assert got == expected
            else:
                assert ".tmp-" in entry.name or ".old-" in entry.name, entry.name
        remove_leftovers(versions, "storagenode")
        assert {p.name for p in proc_dir.iterdir()} <= {"1.2.3"}
    installed = unpack(z, versions, "storagenode", "1.2.3")
    assert (installed.path / "pkg" / "m199.py").read_bytes() == expected["pkg/m199.py"]
