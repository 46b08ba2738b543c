"""The control token on Windows (decision 069), in the Windows runtime under Wine.

What Wine shows: the keeper writes and keeps the token with pywin32 importable lazily,
the DACL it builds holds exactly SYSTEM and Administrators with full control and no
inheritance, and SetNamedSecurityInfo accepts it on the file. What only a real Windows
shows: the DACL read back from the file. Wine keeps no file DACLs (it answers with one
made from the Unix mode: SYSTEM, the user, Everyone), on C: as on Z:, for the data
directory's ACL (service/acl.py) as for this one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nodekeeper.keeper.control_token import ADMINISTRATORS, SYSTEM
from tests.windows.wine import WineRuntime

pytestmark = pytest.mark.wine

FILE_ALL_ACCESS = 0x1F01FF
ACCESS_ALLOWED = 0

CODE = """
import json, sys
from pathlib import Path
import win32security
from nodekeeper.keeper import control_token
from nodekeeper.keeper.client import read_token
state = Path(sys.argv[1])
first = control_token.ensure_token(state)  # SetNamedSecurityInfo with the DACL below
path = state / control_token.TOKEN_FILE
dacl = control_token.windows_dacl()
aces = []
for n in range(dacl.GetAceCount()):
    (kind, flags), mask, sid = dacl.GetAce(n)
    aces.append([win32security.ConvertSidToStringSid(sid), kind, mask, flags])
seen = {
    "aces": aces,
    "same_again": control_token.ensure_token(state) == first,
    "read_back": read_token(path) == first,
    "length": len(first),
}
print("RESULT " + json.dumps(seen))
"""


def test_the_token_dacl_is_system_and_administrators_only(
    wine: WineRuntime, tmp_path: Path
) -> None:
    state = f"C:\\nodekeeper-token-{tmp_path.name}\\state"
    done = wine.run("-c", CODE, state, timeout=180)
    assert done.returncode == 0, done.output
    seen = done.result()
    assert sorted(map(tuple, seen["aces"])) == sorted(
        [
            (SYSTEM, ACCESS_ALLOWED, FILE_ALL_ACCESS, 0),
            (ADMINISTRATORS, ACCESS_ALLOWED, FILE_ALL_ACCESS, 0),
        ]
    ), json.dumps(seen, indent=1)
    assert seen["same_again"] and seen["read_back"] and seen["length"] == 43
