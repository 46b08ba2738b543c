"""Semantic versions as Storj writes them ("v1.2.3" or "1.2.3")."""

from __future__ import annotations

import semver


class InvalidVersionError(ValueError):
    """The text is not a semantic version."""


def parse_version(text: str) -> semver.Version:
    """Parse ``1.2.3`` or ``v1.2.3`` (pre-release and build parts allowed).

    Raises InvalidVersionError with a message that says what was expected.
    """
    if not isinstance(text, str):
        raise InvalidVersionError(f"version must be a string, got {type(text).__name__}")
    raw = text.strip()
    if raw[:1] in ("v", "V"):
        raw = raw[1:]
    try:
        return semver.Version.parse(raw)
    except (ValueError, TypeError):
        raise InvalidVersionError(
            f"{text!r} is not a semantic version: "
            "expected MAJOR.MINOR.PATCH such as 1.2.3 or v1.2.3"
        ) from None


def normalize_version(text: str) -> str:
    """The canonical form we store and serve: no leading ``v``."""
    return str(parse_version(text))


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as a is older than, equal to or newer than b."""
    return parse_version(a).compare(parse_version(b))
