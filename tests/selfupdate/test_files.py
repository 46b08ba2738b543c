"""The launcher's files (state, request, delivered), its manifest reader against the
keeper's own, and its settings against the keeper's config."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from nodekeeper.keeper.config import default_data_dir as keeper_default_data_dir
from nodekeeper.keeper.config import load_config
from nodekeeper.launcher import manifest as launcher_manifest
from nodekeeper.launcher import settings, statefile
from nodekeeper.launcher.decide import Outcome, Pending, State
from nodekeeper.launcher.protocol import FORMAT, REQUEST_FILE, STATE_FILE
from nodekeeper.version import manifest as keeper_manifest

# -- state.json --------------------------------------------------------------------------

FULL = State(
    current="1.4.0",
    previous="1.3.2",
    pending=Pending("1.5.0", 2),
    failed=("1.4.1", "1.4.2"),
    outcomes=(
        Outcome("1-rolled_back-1.4.2", "rolled_back", "1.4.2", "1.4.0", "exited", "code 3", 1.5),
    ),
)


@pytest.mark.parametrize("state", [State(), FULL, State(previous="1.0.0")])
def test_state_round_trips(tmp_path: Path, state: State) -> None:
    statefile.save_state(tmp_path, state)
    assert statefile.load_state(tmp_path) == state
    assert not list(tmp_path.glob(".*.tmp"))


def test_no_state_file_is_a_fresh_state(tmp_path: Path) -> None:
    assert statefile.load_state(tmp_path) == State()


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"\xff\xfe",
        b"[]",
        json.dumps({"format": 2}).encode(),
        json.dumps({"format": FORMAT, "current": 3}).encode(),
        json.dumps({"format": FORMAT, "pending": {"version": "1.0.0"}}).encode(),
        json.dumps({"format": FORMAT, "failed": "1.0.0"}).encode(),
    ],
)
def test_damaged_state_is_an_error_and_can_be_set_aside(tmp_path: Path, content: bytes) -> None:
    (tmp_path / STATE_FILE).write_bytes(content)
    with pytest.raises(statefile.StateFileError):
        statefile.load_state(tmp_path)
    kept = statefile.set_aside_damaged(tmp_path)
    assert kept is not None and kept.read_bytes() == content
    assert statefile.load_state(tmp_path) == State()


def test_a_malformed_outcome_is_skipped_not_fatal(tmp_path: Path) -> None:
    raw = statefile.state_to_json(FULL)
    raw["outcomes"].append({"kind": "rolled_back"})  # no id, no version
    raw["outcomes"].append("nonsense")
    (tmp_path / STATE_FILE).write_text(json.dumps(raw))
    assert statefile.load_state(tmp_path).outcomes == FULL.outcomes


def test_unknown_keys_are_ignored_for_newer_launchers(tmp_path: Path) -> None:
    raw = statefile.state_to_json(FULL) | {"something_new": {"x": 1}}
    (tmp_path / STATE_FILE).write_text(json.dumps(raw))
    assert statefile.load_state(tmp_path) == FULL


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    statefile.save_state(tmp_path, FULL)
    with pytest.raises(TypeError):
        statefile.write_json_atomic(tmp_path / STATE_FILE, {"bad": object()})
    assert statefile.load_state(tmp_path) == FULL
    assert not list(tmp_path.glob(".*.tmp"))


def test_request_file(tmp_path: Path) -> None:
    assert statefile.read_request(tmp_path) is None
    statefile.write_request(tmp_path, "1.2.3", 5.0)
    assert statefile.read_request(tmp_path) == "1.2.3"
    statefile.remove_request(tmp_path)
    statefile.remove_request(tmp_path)  # twice is fine
    assert statefile.read_request(tmp_path) is None
    for bad in (
        '{"format": 1}',
        '{"format": 2, "version": "1.0.0"}',
        "junk",
        '{"format": 1, "version": ""}',
    ):
        (tmp_path / REQUEST_FILE).write_text(bad)
        assert statefile.read_request(tmp_path) is None


def test_delivered_file(tmp_path: Path) -> None:
    assert statefile.read_delivered(tmp_path) == frozenset()
    statefile.write_delivered(tmp_path, frozenset({"b", "a"}))
    assert statefile.read_delivered(tmp_path) == frozenset({"a", "b"})
    (tmp_path / "delivered.json").write_text('{"ids": [1, "c"]}')
    assert statefile.read_delivered(tmp_path) == frozenset({"c"})
    (tmp_path / "delivered.json").write_text("junk")
    assert statefile.read_delivered(tmp_path) == frozenset()


# -- manifest ----------------------------------------------------------------------------


def write_manifest(directory: Path, data: object) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / launcher_manifest.MANIFEST_NAME).write_text(json.dumps(data))
    return directory


def test_bootstrap_is_the_keepers() -> None:
    assert launcher_manifest.PYTHON_BOOTSTRAP == keeper_manifest.PYTHON_BOOTSTRAP


@pytest.mark.parametrize(
    "run",
    [
        {"kind": "python", "module": "nodekeeper.launched"},
        {"kind": "executable", "path": "bin/nodekeeper"},
    ],
)
def test_argv_agrees_with_the_keepers_reader(tmp_path: Path, run: dict[str, str]) -> None:
    data = {"format": 1, "process": "nodekeeper", "version": "1.2.3", "run": run}
    install = write_manifest(tmp_path / "1.2.3", data)
    (install / "bin").mkdir()
    (install / "bin" / "nodekeeper").write_text("")
    args = ["--config", "/etc/nk.toml"]
    parsed = keeper_manifest.parse_manifest(json.dumps(data))
    expected = keeper_manifest.run_argv(parsed, str(install), "/py", args)
    assert launcher_manifest.keeper_argv(install, "1.2.3", "/py", args) == expected
    assert launcher_manifest.keeper_argv(install, "v1.2.3", "/py", args) == expected


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (None, "missing"),
        ("not an object", "format-1"),
        ({"format": 2, "process": "nodekeeper", "version": "1.2.3"}, "format-1"),
        (
            {
                "format": 1,
                "process": "storagenode",
                "version": "1.2.3",
                "run": {"kind": "python", "module": "storagenode"},
            },
            "not 'nodekeeper'",
        ),
        (
            {
                "format": 1,
                "process": "nodekeeper",
                "version": "1.2.4",
                "run": {"kind": "python", "module": "nodekeeper.launched"},
            },
            "not '1.2.3'",
        ),
        (
            {
                "format": 1,
                "process": "nodekeeper",
                "version": "1.2.3",
                "run": {"kind": "python", "module": "import os"},
            },
            "can start",
        ),
        (
            {"format": 1, "process": "nodekeeper", "version": "1.2.3", "run": {"kind": "docker"}},
            "can start",
        ),
        (
            {
                "format": 1,
                "process": "nodekeeper",
                "version": "1.2.3",
                "run": {"kind": "executable", "path": "../evil"},
            },
            "leaves",
        ),
        (
            {
                "format": 1,
                "process": "nodekeeper",
                "version": "1.2.3",
                "run": {"kind": "executable", "path": "C:/evil.exe"},
            },
            "leaves",
        ),
        (
            {
                "format": 1,
                "process": "nodekeeper",
                "version": "1.2.3",
                "run": {"kind": "executable", "path": "bin/missing"},
            },
            "missing",
        ),
    ],
)
def test_unusable_installs_are_refused_with_a_reason(
    tmp_path: Path, data: object, message: str
) -> None:
    install = tmp_path / "1.2.3"
    install.mkdir()
    if data is not None:
        write_manifest(install, data)
    with pytest.raises(launcher_manifest.UnusableInstall, match=message):
        launcher_manifest.keeper_argv(install, "1.2.3", "/py", [])


def test_unreadable_manifest_is_unusable(tmp_path: Path) -> None:
    install = tmp_path / "1.2.3"
    install.mkdir()
    (install / launcher_manifest.MANIFEST_NAME).write_text("{broken")
    with pytest.raises(launcher_manifest.UnusableInstall, match="cannot read"):
        launcher_manifest.keeper_argv(install, "1.2.3", "/py", [])


def test_runtime_argv_runs_the_entry_module_isolated() -> None:
    assert launcher_manifest.runtime_argv("/py", ["--config", "c"]) == [
        "/py",
        "-I",
        "-m",
        "nodekeeper.selfupdate.entry",
        "--config",
        "c",
    ]


# -- settings ----------------------------------------------------------------------------


def test_default_data_dir_is_the_keepers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert settings.default_data_dir() == keeper_default_data_dir()
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert settings.default_data_dir() == keeper_default_data_dir()


@pytest.mark.parametrize(
    "text",
    [
        "",
        'data_dir = "rel/data"\n[status]\nlisten = "127.0.0.1:7001"\n',
        'data_dir = "/abs/data"\n[status]\nlisten = "[::1]:7002"\n',
        '[status]\nlisten = "localhost:7003"\n',
    ],
)
def test_keeper_config_is_read_as_the_keeper_reads_it(tmp_path: Path, text: str) -> None:
    path = tmp_path / "conf" / "keeper.toml"
    path.parent.mkdir()
    path.write_text(text)
    data_dir, (host, port) = settings.from_keeper_config(path)
    keeper = load_config(path)
    if "data_dir" in text:
        assert data_dir == keeper.data_path()
    else:
        assert data_dir is None
    k_host, k_port = keeper.status_host_port()
    assert (host, port) == ("127.0.0.1" if k_host == "localhost" else k_host, k_port)


@pytest.mark.parametrize(
    ("text", "message"),
    [("data_dir = ", "not valid TOML"), ('[status]\nlisten = "nope"\n', "HOST:PORT")],
)
def test_bad_keeper_config(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "keeper.toml"
    path.write_text(text)
    with pytest.raises(settings.SettingsError, match=message):
        settings.from_keeper_config(path)
    with pytest.raises(settings.SettingsError, match="cannot read"):
        settings.from_keeper_config(tmp_path / "missing.toml")


def test_launcher_cli_usage_errors_exit_2(tmp_path: Path) -> None:
    import subprocess

    bad = tmp_path / "keeper.toml"
    bad.write_text("data_dir = ")
    for argv in (["--config", str(bad)], ["--probation-seconds", "0"]):
        result = subprocess.run(
            [sys.executable, "-m", "nodekeeper.launcher", *argv],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 2, result.stderr


def test_the_launcher_imports_the_standard_library_only() -> None:
    """It is the piece that never updates: nothing but the standard library and its own
    package (plus nodekeeper/__init__.py, which holds only the version)."""
    import subprocess

    code = (
        "import sys; import nodekeeper.launcher.cli; "
        "print('\\n'.join(sorted({m.split('.')[0] for m in sys.modules} - "
        "set(sys.stdlib_module_names) - set(sys.builtin_module_names))));"
        "print('\\n'.join(m for m in sys.modules if m.startswith('nodekeeper')))"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=30, check=True
    ).stdout.split()
    assert {m for m in out if not m.startswith("nodekeeper")} <= {"__main__", "_distutils_hack"}
    ours = {m for m in out if m.startswith("nodekeeper.")}
    assert ours and all(m.startswith("nodekeeper.launcher") for m in ours), ours
