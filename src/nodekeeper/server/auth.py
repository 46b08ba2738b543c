"""The admin bearer token: from the environment, a file, or generated on first start."""

from __future__ import annotations

import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

TOKEN_ENV = "NODEKEEPER_ADMIN_TOKEN"
MIN_TOKEN_LENGTH = 16


class TokenError(Exception):
    pass


@dataclass(frozen=True)
class AdminToken:
    value: str
    source: str  # where it came from, for the start-up message

    def matches(self, presented: str) -> bool:
        return hmac.compare_digest(self.value.encode(), presented.encode())


def load_admin_token(token_file: Path | None, data_dir: Path) -> tuple[AdminToken, bool]:
    """Returns the token and whether it was generated just now."""
    env = os.environ.get(TOKEN_ENV, "").strip()
    if env:
        _check(env, f"${TOKEN_ENV}")
        return AdminToken(env, f"${TOKEN_ENV}"), False
    if token_file is not None:
        value = _read_token(token_file)
        _check(value, str(token_file))
        return AdminToken(value, str(token_file)), False
    generated = data_dir / "admin-token"
    if generated.exists():
        value = _read_token(generated)
        _check(value, str(generated))
        return AdminToken(value, str(generated)), False
    data_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    fd = os.open(generated, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return AdminToken(value, str(generated)), True


def _read_token(path: Path) -> str:
    try:
        return path.read_bytes().decode("ascii").strip()
    except OSError as exc:
        raise TokenError(f"cannot read admin token file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise TokenError(
            f"the admin token file {path} is not ASCII text: put one token in it, e.g. "
            "the output of `openssl rand -hex 32`"
        ) from None


def _check(value: str, source: str) -> None:
    if len(value) < MIN_TOKEN_LENGTH:
        raise TokenError(
            f"the admin token from {source} is too short ({len(value)} characters); "
            f"use at least {MIN_TOKEN_LENGTH}, e.g. `python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))'`"
        )
