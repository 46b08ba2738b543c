import os

import pytest

from nodekeeper.version.nodeid import InvalidNodeIdError, format_node_id, parse_node_id
from nodekeeper.version.versions import (
    InvalidVersionError,
    compare_versions,
    normalize_version,
    parse_version,
)

# Storj's US1 satellite ID, as published by Storj.
US1 = "12EayRS2V1kEsWESU9QMRseFhdxYxKicsiFmxrsLZHeLUtdps3S"


def test_known_storj_id_round_trips():
    raw = parse_node_id(US1)
    assert len(raw) == 32
    assert raw[-1] == 0  # ID format version 0
    assert format_node_id(raw) == US1


def test_random_ids_round_trip_and_start_with_1():
    for _ in range(200):
        raw = os.urandom(31) + b"\x00"
        text = format_node_id(raw)
        assert text.startswith("1")
        assert parse_node_id(text) == raw


def test_hex_form_accepted():
    raw = os.urandom(32)
    assert parse_node_id(raw.hex()) == raw


@pytest.mark.parametrize(
    "bad",
    ["", "   ", "not-base58-0OIl", US1[:-1] + ("a" if US1[-1] != "a" else "b"), "1" * 10],
)
def test_bad_ids_refused(bad):
    with pytest.raises(InvalidNodeIdError):
        parse_node_id(bad)


def test_format_refuses_wrong_length():
    with pytest.raises(InvalidNodeIdError):
        format_node_id(b"\x01" * 31)


def test_versions_accept_leading_v():
    assert parse_version("v1.2.3") == parse_version("1.2.3")
    assert normalize_version("v1.104.5") == "1.104.5"
    assert compare_versions("v1.10.0", "1.9.9") == 1
    assert compare_versions("1.2.3-rc.1", "1.2.3") == -1


@pytest.mark.parametrize("bad", ["", "1.2", "v", "1.2.3.4", "latest", "01.2.3"])
def test_bad_versions_refused(bad):
    with pytest.raises(InvalidVersionError, match="semantic version"):
        parse_version(bad)
