"""Config files as Windows editors save them: UTF-16 with a byte-order mark (Notepad's
"Unicode"), UTF-8 with a BOM; anything else undecodable is one clear line that names the
file, says what is wrong and how to fix it.

Real files in each encoding, read through the real loaders and the real CLI entry points.
"""

from __future__ import annotations

import codecs
import logging
from pathlib import Path

import pytest

from nodekeeper.cli import EXIT_USAGE
from nodekeeper.cli import main as nodekeeper_main
from nodekeeper.keeper.config import ConfigError, load_config
from nodekeeper.launcher.textfile import TextDecodeError, decode_config_text
from storagenode import exitcodes
from storagenode.cli import main as storagenode_main
from storagenode.config import NotConfiguredError
from storagenode.config import load_config as load_node_config

KEEPER_TOML = '# keeper — edited in Notepad\n[status]\nlisten = "127.0.0.1:17999"\n'

# (name, bytes as the editor writes them)
ACCEPTED = {
    "utf-8": KEEPER_TOML.encode("utf-8"),
    "utf-8 with BOM": codecs.BOM_UTF8 + KEEPER_TOML.encode("utf-8"),
    "utf-16-le with BOM": codecs.BOM_UTF16_LE + KEEPER_TOML.encode("utf-16-le"),
    "utf-16-be with BOM": codecs.BOM_UTF16_BE + KEEPER_TOML.encode("utf-16-be"),
    "utf-16-le with BOM, CRLF": codecs.BOM_UTF16_LE
    + KEEPER_TOML.replace("\n", "\r\n").encode("utf-16-le"),
}

# (name, bytes, words the one line must contain)
REFUSED = {
    "windows-1252": (KEEPER_TOML.encode("cp1252"), ["0x97", "line 1, column 10", "UTF-8"]),
    "utf-16-le without BOM": (KEEPER_TOML.encode("utf-16-le"), ["byte-order mark", "UTF-8"]),
    "utf-32 with BOM": (codecs.BOM_UTF32_LE + KEEPER_TOML.encode("utf-32-le"), ["UTF-32"]),
    "utf-16 with a lone surrogate": (
        codecs.BOM_UTF16_LE + b"a\x00\x00\xd8b\x00",
        ["UTF-16", "UTF-8"],
    ),
    "binary garbage": (bytes(range(256)) * 4, ["UTF-8"]),
}


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("encoding", list(ACCEPTED))
def test_keeper_reads_the_encodings_windows_editors_write(tmp_path: Path, encoding: str) -> None:
    config = load_config(_write(tmp_path, "keeper.toml", ACCEPTED[encoding]))
    assert config.status.listen == "127.0.0.1:17999"


@pytest.mark.parametrize("encoding", list(REFUSED))
def test_keeper_refuses_other_encodings_in_one_line(tmp_path: Path, encoding: str) -> None:
    data, words = REFUSED[encoding]
    path = _write(tmp_path, "keeper.toml", data)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    for word in words:
        assert word in message


@pytest.mark.parametrize("encoding", list(REFUSED))
def test_nodekeeper_cli_says_what_is_wrong_without_a_traceback(
    tmp_path: Path, encoding: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data, words = REFUSED[encoding]
    path = _write(tmp_path, "keeper.toml", data)
    before = path.read_bytes()
    assert nodekeeper_main(["status", "--config", str(path)]) == EXIT_USAGE
    out, err = capsys.readouterr()
    assert out == ""
    assert "Traceback" not in err
    (line,) = err.splitlines()
    assert line.startswith(f"nodekeeper: error: {path}: ")
    assert "save" in line  # the fix
    for word in words:
        assert word in line
    assert path.read_bytes() == before  # changes nothing


def test_the_keeper_service_entry_point_accepts_utf16(tmp_path: Path) -> None:
    """`python -m nodekeeper.keeper` loads through the same reader: a UTF-16 config is
    refused only for what it says (here: a bad key), not for its encoding."""
    from nodekeeper.keeper.__main__ import main as keeper_main

    text = "[status]\nlisten = 'nowhere'\n"
    path = _write(tmp_path, "keeper.toml", codecs.BOM_UTF16_LE + text.encode("utf-16-le"))
    with pytest.raises(ConfigError, match=r"status\.listen"):
        load_config(path)
    assert keeper_main(["--config", str(path)]) == EXIT_USAGE


# -- the storage node's config.toml ------------------------------------------------------

NODE_TOML = (
    "# node — edited in Notepad\n"
    "config_format = 1\n"
    'storage_dir = "/srv/pieces"\n'
    "allocated_bytes = 1000000\n"
)


def _node_dir(tmp_path: Path, data: bytes) -> Path:
    config_dir = tmp_path / "node"
    config_dir.mkdir()
    (config_dir / "config.toml").write_bytes(data)
    (config_dir / "identity.key").write_text("not read by load_config\n")
    return config_dir


@pytest.mark.parametrize(
    "encode",
    [
        lambda t: codecs.BOM_UTF8 + t.encode("utf-8"),
        lambda t: codecs.BOM_UTF16_LE + t.encode("utf-16-le"),
        lambda t: codecs.BOM_UTF16_BE + t.encode("utf-16-be"),
    ],
    ids=["utf-8 with BOM", "utf-16-le with BOM", "utf-16-be with BOM"],
)
def test_storagenode_reads_the_encodings_windows_editors_write(tmp_path: Path, encode) -> None:
    config = load_node_config(_node_dir(tmp_path, encode(NODE_TOML)))
    assert (config.storage_dir, config.allocated_bytes) == (Path("/srv/pieces"), 1000000)


def test_storagenode_refuses_windows_1252_in_one_line_with_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_dir = _node_dir(tmp_path, NODE_TOML.encode("cp1252"))
    with pytest.raises(NotConfiguredError) as info:
        load_node_config(config_dir)
    message = str(info.value)
    assert "\n" not in message
    assert str(config_dir / "config.toml") in message
    assert "line 1" in message and "save" in message

    # The node logs to the stderr of the moment it first configured its logger.
    for handler in logging.getLogger("storagenode").handlers[:]:
        logging.getLogger("storagenode").removeHandler(handler)
    assert storagenode_main(["info", "--config-dir", str(config_dir)]) == exitcodes.NOT_CONFIGURED
    out, err = capsys.readouterr()
    assert out == ""
    assert "Traceback" not in err


# -- the pure decoder ---------------------------------------------------------------------


def test_decoder_strips_the_bom_and_keeps_the_text() -> None:
    for data in ACCEPTED.values():
        assert decode_config_text(data).replace("\r\n", "\n") == KEEPER_TOML


def test_decoder_names_line_and_column_of_the_bad_byte() -> None:
    with pytest.raises(TextDecodeError) as info:
        decode_config_text(b'a = 1\nname = "caf\xe9"\n')
    assert "byte 0xE9 at line 2, column 12" in str(info.value)


def test_the_launcher_reads_a_utf16_keeper_config(tmp_path: Path) -> None:
    """The Windows service runs the launcher, which reads data_dir and status.listen from
    the same keeper.toml the operator saved in Notepad."""
    from nodekeeper.launcher.settings import from_keeper_config

    path = _write(tmp_path, "keeper.toml", ACCEPTED["utf-16-le with BOM"])
    assert from_keeper_config(path) == (None, ("127.0.0.1", 17999))
