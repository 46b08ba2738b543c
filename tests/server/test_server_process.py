"""The control plane as a process: `python -m nodekeeper server run` starts from its
command line, the admin CLI as a process talks to it, and SIGTERM ends it after a graceful
shutdown. Everything else about the server runs in this process (controlplane.py); these
are the checks that the real program around it still fits."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from .controlplane import ControlPlaneProcess

pytestmark = pytest.mark.e2e


def nodekeeper(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nodekeeper", *args],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_server_process_starts_answers_the_cli_and_ends_on_sigterm(tmp_path):
    cp = ControlPlaneProcess(tmp_path / "cp", token=None)
    with cp:
        token_file = cp.data_dir / "admin-token"
        assert f"generated an admin token into {token_file}" in cp.log_path.read_text()
        env = {**cp.env(), "NODEKEEPER_ADMIN_TOKEN": token_file.read_text().strip()}
        done = nodekeeper(env, "rollout", "status", "--json")
        assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr
        env["NODEKEEPER_ADMIN_TOKEN"] = "wrong-token-wrong-token"
        refused = nodekeeper(env, "rollout", "status")
        assert refused.returncode == 1, refused.stderr
        assert refused.stderr.startswith("nodekeeper: error: ") and refused.stderr.count("\n") == 1
        del env["NODEKEEPER_SERVER"]
        usage = nodekeeper(env, "rollout", "status")
        assert usage.returncode == 2 and "$NODEKEEPER_SERVER" in usage.stderr
    # uvicorn finishes its shutdown, then re-raises the SIGTERM it caught (what a
    # service manager expects to see); the database was closed on the way.
    assert cp.exit_code == -signal.SIGTERM
    assert "Application shutdown complete" in cp.log_path.read_text()
