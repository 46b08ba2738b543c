"""Helpers for the reporter tests: real identity files, a real control plane, a reporter
with short delays running in the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from nodekeeper.identity import IdentitySource, NodeIdentity, identity_from_key
from nodekeeper.keeper.reports import QueueLimits, Reporter, ReporterSettings
from nodekeeper.keeper.reports.policy import RetryTiming
from tests.server.controlplane import ControlPlane
from tests.support import free_port

# Short enough for tests, the same code paths as in service.
FAST = RetryTiming(
    initial=0.05, maximum=0.4, jitter=0.2, retry_after_max=3600, retry_after_scale=0.01
)


def write_identity(config_dir: Path, key: Ed25519PrivateKey | None = None) -> NodeIdentity:
    """What `storagenode setup` writes: identity.key, PKCS#8 PEM, mode 0600."""
    key = key or Ed25519PrivateKey.generate()
    config_dir.mkdir(parents=True, exist_ok=True)
    path = config_dir / "identity.key"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return identity_from_key(key)


def make_reporter(
    directory: Path,
    config_dir: Path,
    server_url: str,
    *,
    limits: QueueLimits | None = None,
    timing: RetryTiming = FAST,
    identity_retry: float = 0.05,
    request_timeout: float = 2.0,
    ca_bundle: str | None = None,
) -> Reporter:
    settings = ReporterSettings(
        server_url=server_url,
        directory=directory,
        limits=limits or QueueLimits(),
        timing=timing,
        request_timeout=request_timeout,
        identity_retry_seconds=identity_retry,
        ca_bundle=ca_bundle,
    )
    return Reporter(settings, IdentitySource.in_config_dir(config_dir))


class Sending:
    """``Reporter.run()`` as a task of the current event loop, cancelled on exit."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Reporter:
        self.task = asyncio.create_task(self.reporter.run())
        return self.reporter

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        if self.task.done():  # run() must never end on its own: surface why it did
            self.task.result()
            raise AssertionError("Reporter.run() returned")
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


def stored(server: ControlPlane, node: NodeIdentity | None = None) -> list[dict[str, Any]]:
    """What the control plane stored (from ``node`` only, if given), oldest first."""
    with server.admin() as admin:
        rows = admin.get("/v1/admin/reports", params={"limit": 10000}).json()
    if node is not None:
        rows = [r for r in rows if r["node_id"] == node.node_id.hex()]  # stored as hex
    return list(reversed(rows))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """One control plane per module (a start costs a second or two); each test is its
    own node, with its own identity, and reads back only that node's reports."""
    with ControlPlane(tmp_path_factory.mktemp("cp") / "cp") as cp:
        yield cp


@pytest.fixture
def down_url() -> str:
    """A loopback URL where nothing listens (yet)."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(autouse=True)
def _reporter_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="nodekeeper.keeper")
