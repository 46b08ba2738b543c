"""Who may touch what under ProgramData (decision 066).

ProgramData's own ACL lets every user create files and folders, so the installer replaces
the inherited ACL of ``<ProgramData>\\nodekeeper`` with an explicit, protected one:

- SYSTEM and Administrators: full control, everywhere;
- Users: read and execute on the data directory and what it holds, which is what the
  tray app (run by an ordinary user) reads: the keeper's config, logs, error index,
  state and status files;
- the node's directory (``storagenode``: its identity key and shutdown token): SYSTEM and
  Administrators only, no inheritance from above, so no user can read the key that
  carries the node's reputation, nor the token that can stop it.

The rules are data (``RULES``) and tested as such; ``secure`` applies them with
SetNamedSecurityInfo (pywin32), which propagates the inheritable entries to what is
already there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

SYSTEM = "S-1-5-18"
ADMINISTRATORS = "S-1-5-32-544"
USERS = "S-1-5-32-545"

FULL = "full"
READ = "read"


@dataclass(frozen=True)
class Rule:
    """A protected DACL for one directory: (SID, access) pairs, inherited below it."""

    relative: str  # "" = the data directory itself
    grants: tuple[tuple[str, str], ...]


RULES = (
    Rule("", ((SYSTEM, FULL), (ADMINISTRATORS, FULL), (USERS, READ))),
    Rule("storagenode", ((SYSTEM, FULL), (ADMINISTRATORS, FULL))),
)


def _mask(access: str) -> int:
    import ntsecuritycon as con

    if access == FULL:
        return int(con.FILE_ALL_ACCESS)
    return int(con.FILE_GENERIC_READ | con.FILE_GENERIC_EXECUTE)


def secure(data_dir: Path, node_dir: Path) -> list[str]:
    """Apply RULES; returns what was done. The node's directory is created if missing, so
    that setup later writes the key into a directory that was never readable."""
    import ntsecuritycon as con
    import win32security

    node_dir.mkdir(parents=True, exist_ok=True)
    done = []
    inherit = con.OBJECT_INHERIT_ACE | con.CONTAINER_INHERIT_ACE
    for rule in RULES:
        path = data_dir / rule.relative if rule.relative else data_dir
        dacl = win32security.ACL()
        for sid, access in rule.grants:
            dacl.AddAccessAllowedAceEx(
                win32security.ACL_REVISION,
                inherit,
                _mask(access),
                win32security.ConvertStringSidToSid(sid),
            )
        win32security.SetNamedSecurityInfo(
            str(path),
            win32security.SE_FILE_OBJECT,
            win32security.DACL_SECURITY_INFORMATION
            | win32security.PROTECTED_DACL_SECURITY_INFORMATION,
            None,
            None,
            dacl,
            None,
        )
        done.append(f"ACL of {path}: " + ", ".join(f"{s} {a}" for s, a in rule.grants))
    return done


def read(path: Path) -> list[dict[str, Any]]:
    """The DACL of ``path`` as Windows holds it: SID, mask, flags per entry."""
    import win32security

    descriptor = win32security.GetNamedSecurityInfo(
        str(path), win32security.SE_FILE_OBJECT, win32security.DACL_SECURITY_INFORMATION
    )
    dacl = descriptor.GetSecurityDescriptorDacl()
    entries = []
    for n in range(dacl.GetAceCount() if dacl else 0):
        (kind, flags), mask, sid = dacl.GetAce(n)
        entries.append(
            {
                "sid": win32security.ConvertSidToStringSid(sid),
                "type": kind,
                "flags": flags,
                "mask": mask,
            }
        )
    return entries
