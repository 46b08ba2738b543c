import pytest

from nodekeeper.units import (
    InvalidDurationError,
    InvalidSizeError,
    format_size,
    parse_duration,
    parse_size,
)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("10MB", 10**7), ("10 mb", 10**7), ("10M", 10**7), ("512KiB", 512 * 1024),
        ("1.5 TiB", 3 * 2**39), ("2ti", 2 * 2**40), ("4k", 4000), ("1PB", 10**15),
        ("7B", 7), ("123", 123), (4096, 4096), (" 0.5 GB ", 5 * 10**8),
    ],
)  # fmt: skip
def test_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize(
    "bad", ["", "GB", "-5GB", "5 XB", "0", "0 GB", "1e9", "5 G B", True, 0, None]
)
def test_bad_sizes_say_what_a_size_looks_like(bad):
    with pytest.raises(InvalidSizeError, match="size like '10MB'"):
        parse_size(bad)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30d", 30 * 86400), ("12h", 43200), ("1.5h", 5400), ("2w", 14 * 86400), (60, 60)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "30", "30y", "-1d", "0d", False])
def test_bad_durations(bad):
    with pytest.raises(InvalidDurationError, match="duration like '30d'"):
        parse_duration(bad)


def test_format_size_reads_back():
    for n in (7, 999, 1500, 2 * 10**6, 500 * 10**9, 3 * 10**12, 4 * 10**15):
        assert abs(parse_size(format_size(n)) - n) / n < 0.01
