"""The ``[logs]`` table of the keeper's config: sizes, ages, the directory cap, the format.

Values are written the way operators write them ("10MB", "512KiB", "30d", "12h") and are
stored as plain integers (bytes, seconds) so the rest of the package never parses again.
Every rejection names the field and the form it accepts, because the operator reading
the error has the config file open and nothing else.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, model_validator

from nodekeeper.units import parse_duration, parse_size

MIN_FILE_SIZE = 1024


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

    max_file_size: Size = Field(
        default="10MB",
        description='A log file rotates before a line would take it past this size ("10MB", '
        '"512KiB"; at least 1KiB).',
    )
    rotate_daily: bool = Field(
        default=True, description="Also rotate at the first line after local midnight."
    )
    retention: Duration = Field(
        default="30d",
        description='Archives whose newest line is older than this are deleted ("30d", "12h").',
    )
    total_cap: Size = Field(
        default="1GB",
        description="Bytes of all archives of the directory together, at any instant (the "
        "oldest go first); at least twice max_file_size. Active files are outside it.",
    )
    format: Literal["text", "json"] = Field(
        default="text",
        description='"text": time, level, source, message per line; "json": one object per line.',
    )

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
