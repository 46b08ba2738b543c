"""Where the node's port comes from: the keeper's [firewall] port, else the node's own
config file (the reference node's config.toml, or a Storj node's config.yaml)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodekeeper.firewall.target import node_listen, resolve_target, split_host_port

KEY = "firewall.port"


def _target(config_dir: Path, port: int | None = None):  # type: ignore[no-untyped-def]
    return resolve_target(config_dir=config_dir, port=port, program="/n", port_key=KEY)


def test_the_keeper_config_wins(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('listen = "0.0.0.0:1"\n')
    target = _target(tmp_path, 28967)
    assert (target.port, target.port_source, target.problem) == (28967, KEY, None)


@pytest.mark.parametrize(
    ("listen", "host", "port"),
    [
        ("0.0.0.0:28967", "0.0.0.0", 28967),
        (":7777", "0.0.0.0", 7777),
        ("[::]:28967", "::", 28967),
        ("192.168.1.5:28967", "192.168.1.5", 28967),
    ],
)
def test_the_reference_nodes_listen(tmp_path: Path, listen: str, host: str, port: int) -> None:
    (tmp_path / "config.toml").write_text(f'config_format = 1\nlisten = "{listen}"\n')
    target = _target(tmp_path)
    assert (target.host, target.port, target.problem) == (host, port, None)
    assert target.port_source == f"listen in {tmp_path / 'config.toml'}"


def test_a_loopback_node_has_nothing_to_check(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("config_format = 1\n")  # the node's default listen
    target = _target(tmp_path)
    assert target.port == 28967
    assert target.problem is not None
    assert target.problem.startswith("the node listens on 127.0.0.1 only (the node's default")
    assert "--listen :28967" in target.problem


def test_a_utf16_config_written_by_notepad(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_bytes('listen = ":28967"\r\n'.encode("utf-16"))
    assert _target(tmp_path).port == 28967


def test_storj_config_yaml(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(
        "# public address to listen on\nserver.address: :28967\n"
        'server.private-address: "127.0.0.1:7778"\n'
    )
    assert node_listen(tmp_path) == (":28967", f"server.address in {tmp_path / 'config.yaml'}")
    (tmp_path / "config.yaml").write_text("storage.allocated-disk-space: 1.00 TB\n")
    assert _target(tmp_path).port == 28967  # Storj's default


def test_not_set_up_yet(tmp_path: Path) -> None:
    target = _target(tmp_path)
    assert target.port is None
    assert target.problem is not None and "not set up yet?" in target.problem
    assert KEY in target.problem


@pytest.mark.parametrize("text", ['listen = "nowhere"\n', "listen = 5\n", "listen = [\n"])
def test_an_unreadable_listen_is_unknown(tmp_path: Path, text: str) -> None:
    (tmp_path / "config.toml").write_text(text)
    target = _target(tmp_path)
    assert target.port is None and target.problem is not None
    assert target.problem.startswith("the node's port is unknown")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a:1", ("a", 1)),
        (":65535", ("0.0.0.0", 65535)),
        ("a:0", None),
        ("a:65536", None),
        ("a", None),
        ("a:b", None),
    ],
)
def test_split_host_port(text: str, expected: tuple[str, int] | None) -> None:
    assert split_host_port(text) == expected
