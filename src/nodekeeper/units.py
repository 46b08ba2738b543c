"""Sizes and durations as operators write them: "500 GB", "512KiB", "30d", "12h".

One parser for the keeper's config, its log settings and the reference node's setup, so
"10MB" means the same everywhere. Decimal units are powers of 1000 and binary units
powers of 1024 (IEC 80000-13): "10MB" is ten million bytes, "10MiB" is 10 x 2**20. "K",
"M", "G" without "B" are decimal, like Storj's own flag parser.
"""

from __future__ import annotations

import re
from decimal import Decimal

_SIZE_UNITS = {"": 1, "b": 1}
for _i, _prefix in enumerate("kmgtp", start=1):
    _SIZE_UNITS[_prefix] = _SIZE_UNITS[f"{_prefix}b"] = 1000**_i
    _SIZE_UNITS[f"{_prefix}i"] = _SIZE_UNITS[f"{_prefix}ib"] = 1024**_i
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_NUMBER_UNIT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")

SIZE_FORM = (
    "a size like '10MB', '512KiB' or '1.5 TiB' "
    "(KB/MB/GB/TB are powers of 1000, KiB/MiB/GiB/TiB of 1024)"
)
DURATION_FORM = "a duration like '30d', '12h', '90m', '2w' or '45s'"


class InvalidSizeError(ValueError):
    """Not a size; the message says what a size looks like."""


class InvalidDurationError(ValueError):
    """Not a duration; the message says what a duration looks like."""


def _number_and_unit(value: object, units: dict[str, int]) -> tuple[Decimal, int] | None:
    match = _NUMBER_UNIT.match(value) if isinstance(value, str) else None
    if not match or match.group(2).lower() not in units:
        return None
    return Decimal(match.group(1)), units[match.group(2).lower()]


def parse_size(value: str | int) -> int:
    """Bytes in ``value`` (an int is bytes). Zero and negative sizes are refused."""
    if isinstance(value, int) and not isinstance(value, bool):
        parsed: tuple[Decimal, int] | None = (Decimal(value), 1)
    else:
        parsed = _number_and_unit(value, _SIZE_UNITS)
    if parsed is None:
        raise InvalidSizeError(f"{value!r} is not {SIZE_FORM}")
    size = int(parsed[0] * parsed[1])
    if size <= 0:
        raise InvalidSizeError(f"{value!r} is zero bytes: use {SIZE_FORM}")
    return size


def parse_duration(value: str | int) -> int:
    """Seconds in ``value`` (an int is seconds; a string needs its unit)."""
    if isinstance(value, int) and not isinstance(value, bool):
        parsed: tuple[Decimal, int] | None = (Decimal(value), 1)
    else:
        parsed = _number_and_unit(value, _DURATION_UNITS)
    if parsed is None:
        raise InvalidDurationError(f"{value!r} is not {DURATION_FORM}")
    seconds = int(parsed[0] * parsed[1])
    if seconds <= 0:
        raise InvalidDurationError(f"{value!r} must be longer than zero: use {DURATION_FORM}")
    return seconds


def format_size(n: int) -> str:
    """A short human form in decimal units (``1.5 GB``) that parse_size reads back."""
    for unit, factor in (("PB", 10**15), ("TB", 10**12), ("GB", 10**9), ("MB", 10**6)):
        if n >= factor:
            return f"{n / factor:.2f}".rstrip("0").rstrip(".") + f" {unit}"
    if n >= 10**3:
        return f"{n / 10**3:.2f}".rstrip("0").rstrip(".") + " KB"
    return f"{n} B"
