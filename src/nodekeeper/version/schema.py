"""The announcement document the control plane serves at ``/``.

It is a superset of Storj's version-control JSON: ``processes.NAME.{minimum,suggested}``
are ``{"version", "url"}`` and ``rollout`` is ``{"seed", "cursor"}``. Our additions sit
beside those keys (``artifacts`` per platform with url, sha256 and size), so a client
that only knows Storj's format still works. Unknown keys are ignored so that an older
keeper keeps working against a newer control plane; everything that is present is
validated strictly.
"""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from .versions import InvalidVersionError, compare_versions, parse_version

HEX64 = re.compile(r"^[0-9a-f]{64}$")
PLATFORM = re.compile(r"^[a-z0-9]+_[a-z0-9]+$")
PROCESS_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_PLACEHOLDER = re.compile(r"\{[^{}]*\}")
_ALLOWED_PLACEHOLDERS = {"{os}", "{arch}"}


def check_version(value: str) -> str:
    try:
        parse_version(value)
    except InvalidVersionError as exc:
        raise ValueError(str(exc)) from None
    return value


def check_url(value: str) -> str:
    """http(s) URL with a host; ``{os}`` and ``{arch}`` are the only placeholders allowed."""
    unknown = set(_PLACEHOLDER.findall(value)) - _ALLOWED_PLACEHOLDERS
    if unknown:
        raise ValueError(
            f"url {value!r} has unknown placeholder(s) {sorted(unknown)}: only {{os}} and "
            "{arch} are substituted"
        )
    parts = urlsplit(value.replace("{os}", "os").replace("{arch}", "arch"))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"url {value!r} must be an absolute http:// or https:// URL")
    return value


def check_hex64(value: str) -> str:
    if not HEX64.match(value):
        raise ValueError(f"{value!r} must be 64 lowercase hex digits (32 bytes)")
    return value


def check_platform(value: str) -> str:
    if not PLATFORM.match(value):
        raise ValueError(f"platform {value!r} must look like os_arch, e.g. windows_amd64")
    return value


def check_process_name(value: str) -> str:
    if not PROCESS_NAME.match(value):
        raise ValueError(
            f"process name {value!r} must be lowercase letters, digits, '-' or '_', "
            "starting with a letter"
        )
    return value


Version = Annotated[str, AfterValidator(check_version)]
Url = Annotated[str, AfterValidator(check_url)]
Hex64 = Annotated[str, AfterValidator(check_hex64)]
Platform = Annotated[str, AfterValidator(check_platform)]
ProcessName = Annotated[str, AfterValidator(check_process_name)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)


class Artifact(_Model):
    """One platform's build of a release: where it is and what its bytes must be."""

    url: Url
    sha256: Hex64
    size: int = Field(ge=1)


class VersionRef(_Model):
    version: Version
    url: Url
    artifacts: dict[Platform, Artifact] = Field(default_factory=dict)

    def artifact_for(self, os_name: str, arch: str) -> Artifact | None:
        return self.artifacts.get(f"{os_name}_{arch}")


class Rollout(_Model):
    """``seed`` empty means there is no rollout: no node is a candidate."""

    seed: str
    cursor: Hex64
    # Our addition beside Storj's keys: how fast the control plane ramps this rollout, in
    # percent per day, so a node can say when the ramp reaches it. Absent or null when
    # the rollout does not move on its own (paused, or set by hand).
    rate_per_day: float | None = Field(default=None, ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _seed_is_empty_or_hex(self) -> Rollout:
        if self.seed != "":
            check_hex64(self.seed)
        return self

    @property
    def active(self) -> bool:
        return self.seed != ""


class ProcessAnnouncement(_Model):
    minimum: VersionRef
    suggested: VersionRef
    rollout: Rollout

    @model_validator(mode="after")
    def _minimum_not_above_suggested(self) -> ProcessAnnouncement:
        if compare_versions(self.minimum.version, self.suggested.version) > 0:
            raise ValueError(
                f"minimum {self.minimum.version} is newer than suggested "
                f"{self.suggested.version}: the minimum must not exceed the suggested version"
            )
        return self


class Announcement(_Model):
    processes: dict[ProcessName, ProcessAnnouncement]


def parse_announcement(data: bytes | str) -> Announcement:
    """Validate a JSON document from a control plane; raises pydantic.ValidationError."""
    return Announcement.model_validate_json(data)
