"""The keeper's config: defaults that run the reference node, and errors that say
file, key and what is allowed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from nodekeeper.keeper.config import ConfigError, KeeperConfig, load_config, parse_size


def load_text(tmp_path: Path, text: str) -> KeeperConfig:
    path = tmp_path / "keeper.toml"
    path.write_text(text)
    return load_config(path)


def errors_of(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, text)
    return str(info.value).splitlines()


def test_defaults_follow_the_design(tmp_path: Path) -> None:
    config = load_text(tmp_path, "")
    assert (config.probe.kind, config.probe.url) == ("http", "http://127.0.0.1:7778/pulse")
    assert (config.probe.interval_seconds, config.probe.timeout_seconds) == (10, 5)
    assert (config.probe.failure_threshold, config.probe.start_grace_seconds) == (3, 300)
    restart = config.restart
    assert (restart.backoff_initial_seconds, restart.backoff_max_seconds) == (1, 300)
    assert restart.backoff_reset_after_seconds == 600
    assert (restart.crash_loop_crashes, restart.crash_loop_window_seconds) == (5, 600)
    assert config.stop.timeout_seconds == 30
    assert config.stop.shutdown_url == "http://127.0.0.1:7778/shutdown"
    assert config.node.not_set_up_exit_code == 78
    assert config.limits.memory_soft_readings == 3
    assert config.status.listen == "127.0.0.1:7779"
    # The reference node's command, found next to this Python, with its config dir filled in.
    argv = config.node_argv()
    assert Path(argv[0]).name == "storagenode" and Path(argv[0]).is_absolute()
    assert argv[1:] == ["run", "--config-dir", str(config.node_config_path())]
    assert config.shutdown_token_path() == config.node_config_path() / "shutdown.token"


def test_no_file_means_defaults() -> None:
    assert load_config(None) == KeeperConfig()


def test_placeholders_and_relative_paths(tmp_path: Path) -> None:
    config = load_text(
        tmp_path,
        'data_dir = "state"\n[node]\nconfig_dir = "{data_dir}/sn"\n'
        'command = ["./bin/node", "--dir", "{config_dir}", "--data", "{data_dir}"]\n'
        'env = { NODE_HOME = "{config_dir}" }\ncwd = "{data_dir}"\n',
    )
    assert config.data_path() == tmp_path / "state"
    assert config.node_config_path() == tmp_path / "state" / "sn"
    assert config.node_argv() == [
        str(tmp_path / "bin" / "node"), "--dir", str(tmp_path / "state" / "sn"),
        "--data", str(tmp_path / "state"),
    ]  # fmt: skip
    assert config.node_env() == {"NODE_HOME": str(tmp_path / "state" / "sn")}
    assert config.node_cwd() == tmp_path / "state"
    assert config.logs_path() == tmp_path / "state" / "logs"


def test_bare_program_names_are_found_next_to_python_then_on_path(tmp_path: Path) -> None:
    config = load_text(tmp_path, '[node]\ncommand = ["python3", "-V"]\n')
    assert Path(config.node_argv()[0]).parent == Path(sys.executable).parent


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (1024, 1024),
        ("1024", 1024),
        ("512 MiB", 512 * 2**20),
        ("2GB", 2 * 10**9),
        ("1.5 GiB", int(1.5 * 2**30)),
        ("10k", 10_000),
        ("3 TiB", 3 * 2**40),
        (None, None),
    ],
)
def test_sizes(text: object, expected: int | None) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "lots", "12 parsecs", "-5 MB", "MB"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(ValueError, match="is not a size"):
        parse_size(text)


def test_limits(tmp_path: Path) -> None:
    config = load_text(
        tmp_path,
        '[limits]\nmemory_soft = "1 GiB"\nmemory_hard = 2000000000\ncpu_cores = [0]\n'
        "cpu_rate_percent = 150\nbelow_normal_priority = false\n",
    )
    assert config.limits.memory_soft == 2**30 and config.limits.memory_hard == 2 * 10**9
    assert config.limits.cpu_cores == [0] and config.limits.cpu_rate_percent == 150


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[probe]\nkind = "udp"\n', "probe.kind: Input should be 'http', 'tcp' or 'process'"),
        (
            "[probe]\ninterval_seconds = 0\n",
            "probe.interval_seconds: Input should be greater",
        ),
        ("[probe]\nfailure_threshold = 0\n", "probe.failure_threshold: Input should be greater"),
        ("[restart]\nbackoff_max_seconds = -3\n", "restart.backoff_max_seconds: Input should be"),
        (
            "[stop]\ntimeout_seconds = 'soon'\n",
            "stop.timeout_seconds: Input should be a valid",
        ),
        ("[limits]\nmemory_soft = 'lots'\n", "limits.memory_soft: 'lots' is not a size"),
        ("[limits]\ncpu_cores = 0\n", "limits.cpu_cores must be a count >= 1"),
        (
            "[limits]\ncpu_cores = [0, -1]\n",
            "limits.cpu_cores[1]: Input should be greater",
        ),
        ("[limits]\nmemroy_soft = 1\n", "limits.memroy_soft: unknown key"),
        ("[status]\nlisten = '0.0.0.0:7779'\n", "status.listen: must be a loopback address"),
        ("[status]\nlisten = 'localhost'\n", "status.listen: status.listen must be HOST:PORT"),
        ('[probe]\nkind = "tcp"\naddress = "nowhere"\n', "probe.address must be HOST:PORT"),
        ("[node]\nnot_set_up_exit_code = 300\n", "node.not_set_up_exit_code: Input should be less"),
        ("[node]\ncommand = []\n", "node.command: List should have at least 1 item"),
        ("[logs]\nmax_file_size = 'huge'\n", "logs"),
        ("surprise = 1\n", "surprise: unknown key"),
    ],
)
def test_errors_name_file_key_and_rule(tmp_path: Path, text: str, expected: str) -> None:
    lines = errors_of(tmp_path, text)
    path = tmp_path / "keeper.toml"
    assert all(line.startswith(f"{path}: ") for line in lines), lines
    assert any(expected in line for line in lines), lines


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope.toml")
    assert "not valid TOML" in errors_of(tmp_path, "[probe\n")[0]


def test_the_alerts_tables_load_and_their_paths_resolve(tmp_path: Path) -> None:
    config = load_text(
        tmp_path,
        'data_dir = "state"\n'
        "[alerts]\n"
        'secrets_file = "{data_dir}/alerts-secrets.toml"\n'
        "debounce_minutes = 15\n"
        "[alerts.push]\n"
        'url = "https://ntfy.sh/my-node"\n'
        "[alerts.email]\n"
        'host = "smtp.example.com"\n'
        'sender = "node@example.com"\n'
        'recipients = ["op@example.com"]\n',
    )
    assert config.alerts.enabled and config.alerts.debounce_minutes == 15
    assert config.alerts.push is not None and config.alerts.webhook is None
    assert config.alerts_secrets_path() == tmp_path / "state" / "alerts-secrets.toml"
    assert config.alerts_state_path() == tmp_path / "state" / "state" / "alerts.json"
    assert not load_text(tmp_path, "").alerts.enabled
    assert load_text(tmp_path, "").alerts_secrets_path() is None


def test_a_bad_alerts_key_names_its_table(tmp_path: Path) -> None:
    lines = errors_of(
        tmp_path,
        '[alerts.email]\nhost = "h"\nsender = "node"\nrecipients = ["op@example.com"]\n'
        '[alerts.webhook]\nurl = "https://example.com"\npassword = "x"\n',
    )
    assert any(
        ": alerts.email.sender: the email address 'node' needs exactly one @" in line
        for line in lines
    ), lines
    assert any(": alerts.webhook.password: unknown key" in line for line in lines), lines
