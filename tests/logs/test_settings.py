import pytest
from pydantic import ValidationError

from nodekeeper.logs import LogSettings, parse_duration, parse_size


def test_defaults():
    s = LogSettings()
    assert s.max_file_size == 10_000_000
    assert s.rotate_daily is True
    assert s.retention == 30 * 86400
    assert s.total_cap == 1_000_000_000
    assert s.format == "text"


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("10MB", 10_000_000),
        ("512KiB", 512 * 1024),
        ("1GB", 10**9),
        ("1.5GiB", 3 * 2**29),
        ("2 MiB", 2 * 2**20),
        ("10mb", 10_000_000),
        ("4096", 4096),
        ("4096B", 4096),
        (4096, 4096),
        ("1TB", 10**12),
    ],
)
def test_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["", "MB", "10 XB", "-5MB", "0", "0MB", "ten", "1e6", True, 0])
def test_bad_sizes(bad):
    with pytest.raises(ValueError, match="size like '10MB'"):
        parse_size(bad)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30d", 30 * 86400),
        ("12h", 43200),
        ("90m", 5400),
        ("45s", 45),
        ("2w", 14 * 86400),
        ("1.5h", 5400),
        ("7D", 7 * 86400),
        (60, 60),
    ],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "30", "30y", "d", "-1d", "0d", "forever", False])
def test_bad_durations(bad):
    with pytest.raises(ValueError, match="duration like '30d'"):
        parse_duration(bad)


def test_config_strings_are_parsed():
    s = LogSettings.model_validate(
        {"max_file_size": "512KiB", "retention": "12h", "total_cap": "50MB", "format": "json"}
    )
    assert (s.max_file_size, s.retention, s.total_cap, s.format) == (
        524288,
        43200,
        50 * 10**6,
        "json",
    )


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("max_file_size", "10 parsecs", ["max_file_size", "size like '10MB'"]),
        ("total_cap", "-1GB", ["total_cap", "size like '10MB'"]),
        ("retention", "30 days please", ["retention", "duration like '30d'"]),
        ("format", "xml", ["format", "'text' or 'json'"]),
        ("rotate_daily", "sometimes", ["rotate_daily", "boolean"]),
    ],
)
def test_bad_values_name_the_field_and_the_form(field, value, words):
    with pytest.raises(ValidationError) as caught:
        LogSettings.model_validate({field: value})
    text = str(caught.value)
    for word in words:
        assert word in text


def test_unknown_keys_are_rejected_so_typos_show():
    with pytest.raises(ValidationError, match="max_size"):
        LogSettings.model_validate({"max_size": "10MB"})


def test_cap_must_hold_two_files():
    with pytest.raises(ValidationError, match=r"total_cap .* at least twice max_file_size"):
        LogSettings(max_file_size="10MB", total_cap="15MB")
    assert LogSettings(max_file_size="10MB", total_cap="20MB").total_cap == 20 * 10**6


def test_tiny_files_are_rejected():
    with pytest.raises(ValidationError, match="max_file_size must be at least 1024"):
        LogSettings(max_file_size="100B")


def test_settings_are_immutable():
    with pytest.raises(ValidationError):
        LogSettings().total_cap = 5  # type: ignore[misc]
