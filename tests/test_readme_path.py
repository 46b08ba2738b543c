"""The README's "Running it for real", followed literally against real processes.

The commands come out of README.md itself (every ```sh block of that section, in
order), so README and test cannot drift. What is replaced, and nothing else:

- example addresses: ``https://version.example.net`` (the control plane) and
  ``https://cdn.example.net`` (an artifact host) become loopback URLs of a control
  plane / static file server this test runs; ``0.0.0.0:7780`` the control plane's
  loopback address; the node's ports ``28967`` / ``7778`` and the keeper's ``7779``
  become free ports;
- example directories (``/etc/nodekeeper``, ``/var/lib/nodekeeper``, ``/srv/storagenode``)
  become directories under the test's tmp dir;
- ``"500 GB"`` becomes ``"1 GB"`` (a test machine may not have the space);
- ``linux_amd64`` becomes this machine's platform key, if it is another one.

Every replaced text must occur in the section (a README that stops using one fails
here). Each block runs in bash with ``set -euo pipefail``; exports carry from block to
block, as in one terminal; the venv's bin directory is first on PATH, as after the
install the README describes. A block that starts a service in the foreground
(``nodekeeper server run``, ``nodekeeper run``) is started in the background instead and
waited for until it answers, as a service manager would.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("builder", ["storagenode.release", "nodekeeper.release"])
@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_the_release_command_writes_a_world_readable_zip(tmp_path, builder, umask):
    """A release zip is public: a web server running as another user must read it,
    whatever the builder's umask (the temp file it is written through is 0600)."""
    out = tmp_path / "releases"
    result = subprocess.run(
        [sys.executable, "-m", builder, "--version", "1.2.3", "--out", str(out)],
        capture_output=True, text=True, timeout=120,
        preexec_fn=lambda: os.umask(umask),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.strip())
    assert path.parent == out and path.name.endswith("_1.2.3.zip")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
