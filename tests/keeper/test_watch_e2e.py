"""The storage watch and the alerts in a real keeper process (decision 070).

- A tmpfs mounted as the reference node's storage directory is unmounted (``umount -l``)
  under the running node: the keeper stops the node and holds it; mounted again with
  the node's verification file, the node runs again with a new pid.
- A crash-looping node with ``[alerts]`` sending to a real webhook receiver
  (``http.server``) and a real SMTP server (aiosmtpd) on loopback: one POST and one mail
  for the crash loop; a second keeper on the same data directory sends nothing more
  (debounced through the state file).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.alerts.receivers import http_receiver, smtp_receiver
from tests.keeper.conftest import PY, fast_settings, gone
from tests.keeper.test_keeper_process import (
    Keeper,
    reference_settings,
    wait_status,
    write_config,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def _mounted(path: Path) -> bool:
    target = os.path.realpath(path)
    with open("/proc/self/mounts") as fh:
        return any(line.split()[1] == target for line in fh)


def _mount_tmpfs(path: Path) -> None:
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(path)],
        check=True,
        capture_output=True,
        timeout=30,
    )


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """An empty tmpfs mounted at tmp_path/mnt; skipped where mounting is not allowed."""
    if not sys.platform.startswith("linux"):
        pytest.skip("mounts a tmpfs: Linux only")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    try:
        _mount_tmpfs(mnt)
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {exc} {detail!r}")
    try:
        yield mnt
    finally:
        while _mounted(mnt):
            subprocess.run(["umount", "-l", str(mnt)], check=False, timeout=30)


def _storage_node(tmp_path: Path, storage: Path) -> tuple[Path, int]:
    from tests.support import free_port

    control = free_port()
    config_dir = tmp_path / "node"
    subprocess.run(
        [
            str(Path(sys.executable).parent / "storagenode"),
            "setup",
            "--config-dir", str(config_dir),
            "--storage-dir", str(storage),
            "--allocated", "10 MB",
            "--listen", f"127.0.0.1:{free_port()}",
            "--control-listen", f"127.0.0.1:{control}",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return config_dir, control


def _errors(tmp_path: Path) -> list[dict[str, Any]]:
    index = tmp_path / "data" / "logs" / "errors.jsonl"
    if not index.exists():
        return []
    return [json.loads(line) for line in index.read_text().splitlines() if line.strip()]


def test_storage_unmounted_under_the_node_stops_it_and_it_comes_back_with_the_disk(
    tmp_path: Path, tmpfs: Path
) -> None:
    config_dir, control = _storage_node(tmp_path, tmpfs)
    marker = (tmpfs / "storage-dir-verification").read_bytes()
    settings = reference_settings(tmp_path, config_dir, control)
    settings["firewall"] = {"enabled": False}
    status_port = int(settings["status"]["listen"].rsplit(":", 1)[1])
    keeper = Keeper(write_config(tmp_path / "keeper.toml", settings))
    try:
        data = wait_status(status_port, lambda d: d["state"] == "running", timeout=40)
        first = data["pid"]
        assert data["hold"] is None
        assert data["watch"]["storage_dir"] == str(tmpfs)
        assert data["watch"]["problems"] == {}

        # The USB disk falls off: the mount goes, an empty directory stays.
        subprocess.run(["umount", "-l", str(tmpfs)], check=True, timeout=30)
        assert not _mounted(tmpfs)
        data = wait_status(
            status_port, lambda d: d["hold"] is not None and d["pid"] is None, timeout=30
        )
        assert gone(first)
        assert data["state"] == "stopped"
        assert "has no storage-dir-verification file" in data["hold"]["reason"]
        assert "Mount the node's disk at that path" in data["hold"]["fix"]
        assert data["last_exit"]["reason"] == "held"
        problem = data["watch"]["problems"]["storage_missing"]
        assert problem["severity"] == "critical"
        entries = [e for e in _errors(tmp_path) if e.get("reason") == "storage-missing"]
        assert len(entries) == 1 and entries[0]["level"] == "ERROR"
        assert entries[0]["fix"] == data["hold"]["fix"]

        # Mounted again (a fresh tmpfs: the marker is restored as a real disk has it).
        _mount_tmpfs(tmpfs)
        (tmpfs / "storage-dir-verification").write_bytes(marker)
        data = wait_status(
            status_port,
            lambda d: d["state"] == "running" and d["pid"] not in (None, first),
            timeout=40,
        )
        assert data["hold"] is None
        assert data["watch"]["problems"] == {}
        assert keeper.stop() == 0
    finally:
        keeper.kill()
    log = (tmp_path / "data" / "logs" / "keeper.log").read_text()
    assert "the storage directory is back; starting the node" in log


def test_a_crash_loop_sends_one_webhook_post_and_one_mail(tmp_path: Path) -> None:
    with http_receiver() as webhook, smtp_receiver() as smtp:
        settings = fast_settings(
            tmp_path,
            [PY, "-c", "import sys; print('cannot open the database'); sys.exit(1)"],
            restart={"backoff_max_seconds": 0.4},
            firewall={"enabled": False},
            alerts={
                "deadline_seconds": 20.0,
                "webhook": {"url": f"{webhook.url}/hook"},
                "email": {
                    "host": "127.0.0.1",
                    "port": smtp.port,
                    "security": "none",
                    "sender": "keeper@example.com",
                    "recipients": ["operator@example.com"],
                },
            },
        )
        status_port = int(settings["status"]["listen"].rsplit(":", 1)[1])
        config = write_config(tmp_path / "keeper.toml", settings)

        keeper = Keeper(config)
        try:
            data = wait_status(
                status_port, lambda d: d["alerts"]["sent"] == 1 and d["restarts"] >= 6
            )
            assert data["crash_loop"] is True
            assert data["alerts"]["channels"] == ["webhook", "email"]
            assert data["alerts"]["active"] == ["crash_loop"]
            assert data["alerts"]["last"]["results"] == {"webhook": "ok", "email": "ok"}
            assert keeper.stop() == 0
        finally:
            keeper.kill()
        # The keeper is gone: nothing more is in flight.
        assert len(webhook.requests) == 1 and len(smtp.mails) == 1
        post = webhook.requests[0]
        assert post.path == "/hook"
        assert post.headers["content-type"] == "application/json"
        body = json.loads(post.body)
        assert body["kind"] == "crash_loop"
        assert body["severity"] == "error"
        assert body["title"] == "Node is crash-looping"
        assert body["message"].startswith("node is in a crash loop: 3 failures in 30 s")
        assert "node.log" in body["fix"]
        assert body["node_id"] is None  # a stand-in node has no identity
        mail = smtp.mails[0]
        assert mail.mail_from == "keeper@example.com"
        assert mail.rcpt_tos == ["operator@example.com"]
        assert mail.message["Subject"] == "[nodekeeper] Node is crash-looping"
        assert mail.message["X-Nodekeeper-Kind"] == "crash_loop"
        assert body["message"] in mail.message.get_payload(decode=True).decode()

        # A second keeper on the same data directory: the crash loop again, debounced by
        # the state file the first one left.
        keeper = Keeper(config)
        try:
            data = wait_status(status_port, lambda d: d["alerts"]["suppressed"] >= 1)
            assert data["alerts"]["sent"] == 0
            assert keeper.stop() == 0
        finally:
            keeper.kill()
        assert len(webhook.requests) == 1 and len(smtp.mails) == 1
