"""Parsing and printing sizes such as ``500 GB``, ``2TB`` or ``1.5 TiB`` (pure)."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

# Decimal units are what disk vendors and Storj's dashboard use; binary units are what
# operating systems show. Both are accepted; a bare number is bytes. "K"/"M"/... without
# "B" are decimal, like Storj's own flag parser.
_UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "p": 10**15,
    "pb": 10**15,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
    "pib": 2**50,
}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?|\.[0-9]+)\s*([a-zA-Z]*)\s*$")


class InvalidSizeError(ValueError):
    """The text is not a size."""


def parse_size(text: str) -> int:
    """Bytes in ``text``; raises InvalidSizeError saying what a size looks like."""
    match = _SIZE.match(text) if isinstance(text, str) else None
    if not match:
        raise InvalidSizeError(
            f"{text!r} is not a size: write a number and a unit, e.g. 500 GB, 2TB or 1.5 TiB"
        )
    number, unit = match.groups()
    factor = _UNITS.get(unit.lower())
    if factor is None:
        raise InvalidSizeError(
            f"{text!r} has an unknown unit {unit!r}: use B, KB, MB, GB, TB, PB "
            "(powers of 1000) or KiB, MiB, GiB, TiB, PiB (powers of 1024)"
        )
    try:
        value = int(Decimal(number) * factor)
    except InvalidOperation:  # pragma: no cover - the regex only lets digits through
        raise InvalidSizeError(f"{text!r} is not a number") from None
    if value <= 0:
        raise InvalidSizeError(f"{text!r} is zero: allocate at least one byte")
    return value


def format_size(n: int) -> str:
    """A short human form in decimal units (``1.5 GB``), matching what parse_size reads."""
    for unit, factor in (("PB", 10**15), ("TB", 10**12), ("GB", 10**9), ("MB", 10**6)):
        if n >= factor:
            return f"{n / factor:.2f}".rstrip("0").rstrip(".") + f" {unit}"
    if n >= 10**3:
        return f"{n / 10**3:.2f}".rstrip("0").rstrip(".") + " KB"
    return f"{n} B"
