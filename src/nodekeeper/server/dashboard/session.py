"""The dashboard's session and CSRF tokens: signed, expiring, and checked without state.

A session is the cookie ``v1.<expires>.<nonce>.<signature>``; the signature is an
HMAC-SHA256 under a key derived from the admin token. Every replica holds the token, so
every replica accepts every session without a shared session table, and a new admin
token ends all sessions at once. The CSRF token of a form is an HMAC of the session's
nonce: a page from another site can neither read it nor compute it.

Pure functions of the token, a clock value and randomness; the routes do the HTTP part.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Literal

COOKIE = "nk_session"
LOGIN_COOKIE = "nk_login"  # the login form's own CSRF nonce (there is no session yet)
SESSION_SECONDS = 8 * 3600.0  # a working day; then the token is asked for again
_VERSION = "v1"


def _key(admin_token: str) -> bytes:
    # A key of its own, so a cookie is never a value the admin API would accept.
    return hmac.new(admin_token.encode(), b"nodekeeper dashboard session v1", "sha256").digest()


def _sign(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Session:
    nonce: str
    expires: float


def new_session(admin_token: str, now: float, seconds: float = SESSION_SECONDS) -> str:
    """The cookie value of a fresh session."""
    expires = int(now + seconds)
    nonce = secrets.token_hex(16)
    body = f"{_VERSION}.{expires}.{nonce}"
    return f"{body}.{_sign(_key(admin_token), body)}"


def read_session(
    admin_token: str, cookie: str | None, now: float
) -> Session | Literal["expired"] | None:
    """The session, or None when there is no cookie, or "expired" for one that was valid.

    A cookie that is malformed or signed with another token counts as no session: the
    login page is the answer either way, and it says nothing about why a forgery failed."""
    if not cookie:
        return None
    parts = cookie.split(".")
    if len(parts) != 4 or parts[0] != _VERSION or not parts[1].isdigit():
        return None
    body, signature = ".".join(parts[:3]), parts[3]
    if not hmac.compare_digest(_sign(_key(admin_token), body), signature):
        return None
    expires = float(parts[1])
    if now >= expires:
        return "expired"
    return Session(nonce=parts[2], expires=expires)


def csrf_token(admin_token: str, session: Session) -> str:
    return _sign(_key(admin_token), f"csrf.{session.nonce}")


def check_csrf(admin_token: str, session: Session, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(
        csrf_token(admin_token, session), presented or ""
    )


def new_login_nonce() -> str:
    return secrets.token_hex(16)


def login_csrf(admin_token: str, nonce: str) -> str:
    return _sign(_key(admin_token), f"login.{nonce}")


def check_login_csrf(admin_token: str, nonce: str | None, presented: str | None) -> bool:
    if not nonce or not presented:
        return False
    return hmac.compare_digest(login_csrf(admin_token, nonce), presented)
