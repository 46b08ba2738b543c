"""The alert channels' secrets, from a TOML file only the service can read.

keeper.toml is often readable by every local user (and pasted into bug reports), so the
SMTP password and the bearer tokens live in a separate file named by ``[alerts]
secrets_file``. On POSIX a file that group or others may read is refused, with the chmod
that fixes it; Windows has no mode bits to read here (the MSI sets the ACLs of the data
directory), so the file is just read.

The file has string keys only::

    smtp_password = "..."
    webhook_token = "..."
    push_token = "..."
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from pathlib import Path

KNOWN_KEYS = frozenset({"smtp_password", "webhook_token", "push_token"})


class SecretsError(Exception):
    """The secrets file cannot be used; the message says why and what to do."""


def read_secrets(path: Path) -> dict[str, str]:
    try:
        if os.name == "posix":
            mode = os.stat(path).st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise SecretsError(
                    f"{path}: readable by other users (mode {stat.S_IMODE(mode):04o}); "
                    f"run: chmod 600 {path}"
                )
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise SecretsError(f"{path}: no such file ([alerts] secrets_file)") from None
    except IsADirectoryError:
        raise SecretsError(f"{path}: is a directory; secrets_file names a TOML file") from None
    except OSError as exc:
        raise SecretsError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise SecretsError(f"{path}: not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # The message may quote the line: never a secret in a log.
        raise SecretsError(f"{path}: not valid TOML (line {_line_of(exc)})") from None
    unknown = sorted(set(data) - KNOWN_KEYS)
    if unknown:
        raise SecretsError(
            f"{path}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(KNOWN_KEYS))}"
        )
    bad = sorted(k for k, v in data.items() if not isinstance(v, str) or not v)
    if bad:
        raise SecretsError(f"{path}: {', '.join(bad)} must be non-empty strings")
    return dict(data)


def _line_of(exc: tomllib.TOMLDecodeError) -> str:
    # ``lineno`` is new in Python 3.14; before, the message ends "(at line N, column M)".
    found = re.search(r"line (\d+)", str(exc))
    return str(getattr(exc, "lineno", None) or (found.group(1) if found else "?"))
