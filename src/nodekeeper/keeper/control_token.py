"""The control token: what an action on the keeper's status API must carry (decision 069).

``<state dir>/control.token`` holds a random URL-safe string. The keeper writes it at
start when it is missing, durably (``nodekeeper.durable``), readable by the keeper's own
account and administrators only: mode 0600 on POSIX (root reads it anyway), and on
Windows a protected DACL of SYSTEM and Administrators, replacing the Users-readable ACL
the data directory passes down (``service/acl.py``). Whoever can read the file may act;
everyone else may still read the status.

Not rotated at every start: an elevated tray or a script that read it keeps working
across keeper restarts. A file that is empty, too short, not text, or (POSIX) readable by
group or others is treated as leaked or damaged and replaced. To rotate by hand, delete
it and restart the keeper.

Light on purpose: the tray's client imports :data:`TOKEN_FILE` from here.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import sys
from pathlib import Path
from typing import Any

from nodekeeper.durable import write_durably

TOKEN_FILE = "control.token"
# secrets.token_urlsafe(32): 43 characters, 256 bits.
TOKEN_BYTES = 32
MIN_LENGTH = 32

# The only principals that may read the token on Windows (well-known SIDs).
SYSTEM = "S-1-5-18"
ADMINISTRATORS = "S-1-5-32-544"
WINDOWS_GRANTS = ((SYSTEM, "full"), (ADMINISTRATORS, "full"))

log = logging.getLogger("nodekeeper.keeper")


def token_path(state_dir: Path) -> Path:
    return state_dir / TOKEN_FILE


def usable(text: str) -> bool:
    """Whether a token read back is one this keeper would have written (pure)."""
    return len(text) >= MIN_LENGTH and text.isascii() and text.isprintable() and " " not in text


def too_open(mode: int) -> bool:
    """A POSIX mode that lets group or others read or write the token (pure)."""
    return bool(mode & 0o077)


def ensure_token(state_dir: Path) -> str:
    """The token, made (or remade) when missing, damaged or too open; returns it.
    Raises OSError when the state directory cannot be written."""
    path = token_path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    why = _unusable_because(path)
    if why is None:
        token = path.read_text(encoding="ascii").strip()
        restrict(path)  # the ACL again: cheap, and an upgrade may have changed the parent
        return token
    if why != "missing":
        log.warning("control token %s %s: writing a new one", path, why)
    token = secrets.token_urlsafe(TOKEN_BYTES)
    if sys.platform == "win32":
        _write_private_windows(path, token.encode("ascii"))
    else:
        # Created 0600 (durable.write_durably opens it with the mode): never readable by
        # others, not even half-written.
        write_durably(path, token.encode("ascii"), mode=0o600)
    return token


def _write_private_windows(path: Path, data: bytes) -> None:
    """Empty first, its ACL restricted, then filled: a temp file renamed over it would
    inherit the data directory's Users-readable ACL while it holds the token. A write
    torn by a crash leaves a short token, which the next start sees as damaged and
    replaces; a token nobody has read yet is lost with nothing depending on it."""
    path.unlink(missing_ok=True)
    path.touch()
    restrict(path)
    with open(path, "r+b") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def _unusable_because(path: Path) -> str | None:
    try:
        if os.name == "posix" and too_open(path.stat().st_mode):
            return "was readable by other users"
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return "missing"
    except (OSError, UnicodeDecodeError) as exc:
        return f"could not be read ({exc})"
    return None if usable(text) else "was damaged"


def matches(expected: str, authorization: str | None) -> bool:
    """Whether an ``Authorization`` header carries ``expected`` as a bearer token, in
    constant time (no timing tells how much of a guess was right)."""
    if not authorization:
        return False
    scheme, _, given = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode("utf-8"), expected.encode("utf-8"))


def restrict(path: Path) -> None:
    """Only the keeper's account and administrators may read ``path``."""
    if sys.platform == "win32":
        _restrict_windows(path)
    else:
        os.chmod(path, 0o600)


def windows_entries() -> list[tuple[str, str, int]]:
    """The token's DACL as (SID, access, inheritance flags) (pure): full control for
    SYSTEM and Administrators, nothing inherited (a file has nothing below it), nobody
    else. The DACL is set protected, so the data directory's Users entry stops here."""
    return [(sid, access, 0) for sid, access in WINDOWS_GRANTS]


def windows_dacl() -> Any:
    """The token's DACL as a pywin32 ACL object, built from ``windows_entries``."""
    import ntsecuritycon as con  # pywin32, in the Windows runtime only
    import win32security

    dacl = win32security.ACL()
    for sid, _access, flags in windows_entries():
        dacl.AddAccessAllowedAceEx(
            win32security.ACL_REVISION,
            flags,
            con.FILE_ALL_ACCESS,
            win32security.ConvertStringSidToSid(sid),
        )
    return dacl


def _restrict_windows(path: Path) -> None:
    import win32security

    win32security.SetNamedSecurityInfo(
        str(path),
        win32security.SE_FILE_OBJECT,
        # Protected: the data directory's inheritable Users entry does not apply here.
        win32security.DACL_SECURITY_INFORMATION | win32security.PROTECTED_DACL_SECURITY_INFORMATION,
        None,
        None,
        windows_dacl(),
        None,
    )
