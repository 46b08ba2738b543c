"""The keeper's start-up wiring (keeper.wiring, keeper.update_settings): ``[update]``
becomes typed settings once, the error sink exists before the supervisor and is the
supervisor's from the start, and a keeper without ``[update]`` loads no updater code."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nodekeeper.keeper.config import KeeperConfig
from nodekeeper.keeper.reports import ReportingErrorSink
from nodekeeper.keeper.update_settings import UpdateSettings
from nodekeeper.keeper.wiring import Keeper
from nodekeeper.platform import current_platform
from nodekeeper.updater.download import DownloadSettings
from tests.keeper.conftest import ListErrors, ListSink, fast_settings, program

UPDATE = {
    "server": "http://127.0.0.1:9/",
    "process": "storagenode",
    "platform": "linux_amd64",
    "args": ["--config-dir", "{config_dir}"],
    "interval_seconds": 120.0,
    "jitter": 0.2,
    "backoff_initial_seconds": 50.0,
    "backoff_max_seconds": 10.0,  # below the initial delay: no growth
    "connect_timeout_seconds": 4.0,
    "read_timeout_seconds": 7.0,
    "request_deadline_seconds": 33.0,
    "ca_bundle": "{data_dir}/roots.pem",
    "first_check": "now",
}


def _config(tmp_path: Path, **sections: object) -> KeeperConfig:
    settings = fast_settings(tmp_path, program("pulse_node.py"), **sections)
    return KeeperConfig.model_validate(settings)


def test_update_table_becomes_each_parts_settings(tmp_path: Path) -> None:
    config = _config(tmp_path, update=UPDATE)
    settings = UpdateSettings.from_config(config)
    data = config.data_path()
    roots = data / "roots.pem"

    assert settings.process == "storagenode"
    machine = settings.machine
    assert (machine.platform, machine.args) == (
        "linux_amd64",
        ["--config-dir", str(config.node_config_path())],
    )
    assert machine.download == DownloadSettings(
        connect_timeout=4.0, read_timeout=7.0, request_deadline=33.0, ca_bundle=roots
    )
    check = settings.check
    assert (check.server, check.first_check_now, check.node_config_dir) == (
        "http://127.0.0.1:9",
        True,
        config.node_config_path(),
    )
    timing = check.timing
    assert (timing.interval, timing.jitter, timing.backoff_initial, timing.backoff_max) == (
        120.0,
        0.2,
        50.0,
        50.0,
    )
    assert settings.reporter.server_url == "http://127.0.0.1:9"
    assert settings.reporter.directory == config.state_path() / "reports"
    assert settings.reporter.request_deadline == 33.0
    own = settings.self_update
    assert (own.platform, own.data_dir) == ("linux_amd64", data)
    # The keeper's own loop keeps the client's default check deadline, as it always had.
    assert own.download_settings == DownloadSettings(
        connect_timeout=4.0, read_timeout=7.0, ca_bundle=roots
    )


def test_the_supervisor_gets_the_reporting_sink_at_construction(tmp_path: Path) -> None:
    config = _config(tmp_path, update=UPDATE)
    index = ListErrors()
    keeper = Keeper.build(config, current_platform(), sink=ListSink(), errors=index)
    updating = keeper.updating
    assert updating is not None
    sink = keeper.supervisor.errors
    assert isinstance(sink, ReportingErrorSink)
    assert sink.index is index
    # The update machine records its own problems in the index (it reports them itself).
    assert updating.machine.errors is index
    # Not started by nodekeeper-launcher: no keeper update loop.
    assert updating.self_cycle is None

    # A supervisor event goes through the sink as a report (queued on disk) and an entry.
    sink.record("keeper", logging.ERROR, "the node crashed 3 times", reason="crash-loop")
    assert index.reasons() == ["crash-loop"]
    queue = config.state_path() / "reports" / "queue"
    (record,) = [json.loads(p.read_text())["report"] for p in queue.glob("*.json")]
    assert (record["kind"], record["process"]) == ("crash_loop", "storagenode")
    # Nothing installed yet: the running version is not known.
    assert record["details"].get("version_unknown") is True


def test_a_keeper_without_update_loads_no_updater_code(tmp_path: Path) -> None:
    config_file = tmp_path / "keeper.json"
    config_file.write_text(json.dumps(fast_settings(tmp_path, program("pulse_node.py"))))
    script = f"""
import json, sys
from pathlib import Path
from nodekeeper.keeper.config import KeeperConfig
from nodekeeper.keeper.wiring import Keeper
from nodekeeper.platform import current_platform
from tests.keeper.conftest import ListErrors, ListSink

config = KeeperConfig.model_validate(json.loads(Path({str(config_file)!r}).read_text()))
index = ListErrors()
keeper = Keeper.build(config, current_platform(), sink=ListSink(), errors=index)
assert keeper.updating is None and keeper.supervisor.errors is index
heavy = ("nodekeeper.updater", "nodekeeper.selfupdate", "httpx")
loaded = sorted(m for m in sys.modules if m.startswith(heavy))
print(json.dumps(loaded))
"""
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


def test_the_node_runs_under_a_shim_anchored_to_the_launcher_only_under_a_launcher(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decision 063: under the launcher the node's shim watches the launcher, whose pid the
    launcher says in the environment; by hand, the node is the keeper's own child."""
    from nodekeeper.keeper.wiring import _launcher_pid, node_platform
    from nodekeeper.launcher.protocol import ENV_LAUNCHER_PID, ENV_STATE_DIR
    from nodekeeper.platform.posix import PosixPlatform

    config = KeeperConfig.model_validate(fast_settings(tmp_path, program("sleep")))
    monkeypatch.delenv(ENV_STATE_DIR, raising=False)
    monkeypatch.delenv(ENV_LAUNCHER_PID, raising=False)
    assert node_platform(config) is current_platform()
    monkeypatch.setenv(ENV_STATE_DIR, str(tmp_path / "launcher"))
    monkeypatch.setenv(ENV_LAUNCHER_PID, "4242")
    platform = node_platform(config)
    assert isinstance(platform, PosixPlatform) and platform.shim is not None
    assert platform.shim.anchor_pid == 4242
    assert platform.shim.state_dir == config.state_path() / "shim"
    # A launcher from before ENV_LAUNCHER_PID is the keeper's parent (not asked on Windows).
    assert _launcher_pid(None, "/state") == os.getppid()
    assert _launcher_pid("not a pid", "/state") == os.getppid()
    assert _launcher_pid("4242", None) is None
