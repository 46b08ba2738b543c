"""The ``[logs]`` table of the keeper's config: sizes, ages, the directory cap, the format.

Values are written the way operators write them ("10MB", "512KiB", "30d", "12h") and are
stored as plain integers (bytes, seconds) so the rest of the package never parses again.
Every rejection names the field and the form it accepts, because the operator reading
the error has the config file open and nothing else.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationInfo, model_validator

# Decimal units are powers of 1000 and binary units powers of 1024, as IEC 80000-13 says;
# "10MB" in a config means ten million bytes, not 10 MiB.
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_NUMBER_UNIT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")

SIZE_FORM = (
    "a size like '10MB', '512KiB' or '1GB' (KB/MB/GB are powers of 1000, KiB/MiB/GiB of 1024)"
)
DURATION_FORM = "a duration like '30d', '12h', '90m', '2w' or '45s'"

MIN_FILE_SIZE = 1024


def parse_size(value: str | int) -> int:
    """Bytes in ``value``; raises ValueError with the accepted form."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not {SIZE_FORM}")
    if isinstance(value, int):
        number, unit = float(value), ""
    else:
        match = _NUMBER_UNIT.match(value) if isinstance(value, str) else None
        if not match or match.group(2).lower() not in _SIZE_UNITS:
            raise ValueError(f"{value!r} is not {SIZE_FORM}")
        number, unit = float(match.group(1)), match.group(2).lower()
    size = int(number * _SIZE_UNITS[unit])
    if size <= 0:
        raise ValueError(f"{value!r} must be more than zero bytes: use {SIZE_FORM}")
    return size


def parse_duration(value: str | int) -> int:
    """Seconds in ``value``; a bare integer is seconds."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not {DURATION_FORM}")
    if isinstance(value, int):
        number, unit = float(value), "s"
    else:
        match = _NUMBER_UNIT.match(value) if isinstance(value, str) else None
        if not match or match.group(2).lower() not in _DURATION_UNITS:
            raise ValueError(f"{value!r} is not {DURATION_FORM}")
        number, unit = float(match.group(1)), match.group(2).lower()
    seconds = int(number * _DURATION_UNITS[unit])
    if seconds <= 0:
        raise ValueError(f"{value!r} must be longer than zero: use {DURATION_FORM}")
    return seconds


def _size(value: Any, info: ValidationInfo) -> int:
    try:
        return parse_size(value)
    except ValueError as exc:
        raise ValueError(f"{info.field_name}: {exc}") from None


def _duration(value: Any, info: ValidationInfo) -> int:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ValueError(f"{info.field_name}: {exc}") from None


Size = Annotated[int, BeforeValidator(_size)]
Duration = Annotated[int, BeforeValidator(_duration)]


class LogSettings(BaseModel):
    """Rotation, retention and cap of one log directory (bytes and seconds once parsed)."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    max_file_size: Size = "10MB"  # type: ignore[assignment]
    rotate_daily: bool = True
    retention: Duration = "30d"  # type: ignore[assignment]
    total_cap: Size = "1GB"  # type: ignore[assignment]
    format: Literal["text", "json"] = "text"

    @model_validator(mode="after")
    def _cap_holds_the_working_set(self) -> LogSettings:
        if self.max_file_size < MIN_FILE_SIZE:
            raise ValueError(
                f"max_file_size must be at least {MIN_FILE_SIZE} bytes ('1KiB'): "
                f"got {self.max_file_size}"
            )
        # While a file is being compressed the directory holds it, its partial .gz and
        # the file that just rotated: a cap below two files would stall rotation.
        if self.total_cap < 2 * self.max_file_size:
            raise ValueError(
                f"total_cap ({self.total_cap} bytes) must be at least twice max_file_size "
                f"({self.max_file_size} bytes), e.g. total_cap = '1GB' with "
                "max_file_size = '10MB'"
            )
        return self
