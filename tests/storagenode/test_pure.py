"""Pure helpers: sizes, addresses, allocation margin."""

from __future__ import annotations

import pytest

from storagenode.addresses import InvalidAddressError, is_loopback, parse_address
from storagenode.setup import max_allocation
from storagenode.sizes import InvalidSizeError, format_size, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500 GB", 500 * 10**9),
        ("2TB", 2 * 10**12),
        ("1.5 TiB", 3 * 2**39),
        ("1.5TiB", 3 * 2**39),
        ("10 mb", 10**7),
        ("4k", 4000),
        ("1 MiB", 2**20),
        ("123", 123),
        ("7B", 7),
        (" 0.5 GB ", 5 * 10**8),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "GB", "abc", "-5GB", "5 XB", "0", "0 GB", "1e9", "5 G B"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(InvalidSizeError) as info:
        parse_size(text)
    assert "GB" in str(info.value) or "zero" in str(info.value)


def test_format_size_round_trips() -> None:
    for n in (999, 1500, 2 * 10**6, 500 * 10**9, 3 * 10**12):
        assert abs(parse_size(format_size(n)) - n) / n < 0.01


def test_parse_address() -> None:
    assert parse_address("127.0.0.1:28967") == ("127.0.0.1", 28967)
    assert parse_address(":7778") == ("0.0.0.0", 7778)
    assert parse_address("[::1]:7778") == ("::1", 7778)
    assert str(parse_address("[::1]:7778")) == "[::1]:7778"
    for bad in ("127.0.0.1", "host:http", "::1:80", "1.2.3.4:70000", ""):
        with pytest.raises(InvalidAddressError):
            parse_address(bad)


def test_is_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("127.8.9.1") and is_loopback("::1")
    assert is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2")
    assert not is_loopback("example.com")


def test_max_allocation_leaves_ten_percent() -> None:
    assert max_allocation(1100) == 1000
    assert max_allocation(0) == 0
