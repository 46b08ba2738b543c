"""The operator's settings in the node's ``config.toml``, read and changed by the keeper
for the tray's settings screen (``GET``/``POST /settings``, decision 069).

The keeper never imports the node (a real node replaces the reference one), so the few
keys are read here, as ``firewall.target`` reads ``listen``: ``storage_dir``,
``allocated_bytes`` and the ``[operator]`` table (``wallet``, ``email``,
``external_address``; decision 067). Every value is checked by ``node_settings``, the
validators of ``storagenode setup``, the MSI and the wizard; every field is checked
before anything is written, and the file is replaced atomically.

A new storage folder must already hold this node's pieces: its verification file
(``storage-dir-verification``, written by setup) must name this node. Pointing the node
at an empty folder would start it without its pieces, and it would fail every audit of
them: the disqualification this keeper exists to prevent. Moving the pieces is the
operator's job, done while the node is stopped.
"""

from __future__ import annotations

import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nodekeeper import node_settings
from nodekeeper.durable import write_durably
from nodekeeper.launcher.textfile import TextDecodeError, read_config_text
from nodekeeper.units import InvalidSizeError, format_size, parse_size

CONFIG_FILE = "config.toml"
IDENTITY_FILE = node_settings.IDENTITY_FILE
VERIFICATION_FILE = "storage-dir-verification"
OPERATOR_KEYS = ("wallet", "email", "external_address")
FIELDS = (*OPERATOR_KEYS, "storage_dir", "allocation")


class SettingsRefused(Exception):
    """Some fields cannot be applied; ``errors`` maps each to what is wrong. Nothing was
    written."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


@dataclass(frozen=True)
class Change:
    document: dict[str, Any]  # the whole new config.toml
    applied: list[str]  # the fields whose value changed


def is_set_up(config_dir: Path) -> bool:
    """What the node itself requires to run (the reference node's rule)."""
    return (config_dir / CONFIG_FILE).is_file() and (config_dir / IDENTITY_FILE).is_file()


def read_document(config_dir: Path) -> dict[str, Any] | None:
    """The parsed config.toml, or None when it is missing or cannot be read."""
    try:
        return tomllib.loads(read_config_text(config_dir / CONFIG_FILE))
    except (OSError, TextDecodeError, tomllib.TOMLDecodeError):
        return None


def values(document: dict[str, Any] | None) -> dict[str, str | None]:
    """The five settings as the tray shows them (None: unset)."""
    doc = document or {}
    operator = doc.get("operator") if isinstance(doc.get("operator"), dict) else {}
    shown: dict[str, str | None] = {k: _text(operator.get(k)) for k in OPERATOR_KEYS}
    shown["storage_dir"] = _text(doc.get("storage_dir"))
    allocated = doc.get("allocated_bytes")
    ok = isinstance(allocated, int) and not isinstance(allocated, bool) and allocated > 0
    shown["allocation"] = _size_text(allocated) if ok else None
    return shown


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _size_text(n: int) -> str:
    """``1.5 GB`` when that reads back as exactly ``n``, else the bytes."""
    short = format_size(n)
    return short if parse_size(short) == n else f"{n} B"


def plan_change(
    config_dir: Path, document: dict[str, Any], asked: dict[str, Any], used_bytes: int = 0
) -> Change:
    """The new document for the fields ``asked`` (pure but for the disk checks of the
    storage folder). ``used_bytes``: the node's pieces (its pulse), which count as free
    for the allocation since they are already on that disk. Raises SettingsRefused."""
    errors: dict[str, str] = {}
    for key in asked:
        if key not in FIELDS:
            errors[key] = f"unknown setting; the settings are {', '.join(FIELDS)}"
    new = {k: v for k, v in document.items()}
    operator = dict(document.get("operator") or {})
    applied: list[str] = []
    checks = {
        "wallet": node_settings.check_wallet,
        "email": node_settings.check_email,
        "external_address": node_settings.check_external_address,
    }
    for key, check in checks.items():
        if key not in asked:
            continue
        try:
            value = check(_string(key, asked[key]))
        except node_settings.InvalidSetting as exc:
            errors[key] = exc.message
            continue
        if operator.get(key) != value:
            operator[key] = value
            applied.append(key)
    storage = _storage(config_dir, document, asked, used_bytes, errors)
    if storage is not None:
        folder, allocated = storage
        if str(folder) != document.get("storage_dir"):
            new["storage_dir"] = str(folder)
            applied.append("storage_dir")
        if allocated != document.get("allocated_bytes"):
            new["allocated_bytes"] = allocated
            applied.append("allocation")
    if errors:
        raise SettingsRefused(errors)
    if operator:
        new["operator"] = operator
    return Change(new, applied)


def _string(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise node_settings.InvalidSetting(key, f"{key} must be text, not {value!r}")
    return value


def _storage(
    config_dir: Path,
    document: dict[str, Any],
    asked: dict[str, Any],
    used_bytes: int,
    errors: dict[str, str],
) -> tuple[Path, int] | None:
    """(folder, allocated bytes) after the change, when storage_dir or allocation is asked
    for and both are fine; errors filled otherwise."""
    if "storage_dir" not in asked and "allocation" not in asked:
        return None
    current = document.get("storage_dir")
    try:
        folder_text = _string("storage_dir", asked.get("storage_dir", current))
    except node_settings.InvalidSetting as exc:
        errors["storage_dir"] = exc.message
        return None
    folder = Path(folder_text).absolute()
    allocation: object = asked.get("allocation", document.get("allocated_bytes"))
    try:
        allocated = parse_size(allocation)  # type: ignore[arg-type]
    except (InvalidSizeError, TypeError) as exc:
        errors["allocation"] = f"the allocation: {exc}"
        return None
    if current is None or folder != Path(current).absolute():
        problem = _foreign_folder(config_dir, folder)
        if problem is not None:
            errors["storage_dir"] = problem
            return None
    try:
        free = shutil.disk_usage(folder).free
    except OSError as exc:
        errors["storage_dir"] = f"cannot look into {folder}: {exc.strerror or exc}"
        return None
    try:
        node_settings.check_allocation(allocated, free + max(0, used_bytes), folder)
    except node_settings.InvalidSetting as exc:
        errors["allocation"] = exc.message
        return None
    return folder, allocated


def _foreign_folder(config_dir: Path, folder: Path) -> str | None:
    """Why ``folder`` cannot become this node's storage folder, or None."""
    fix = (
        "stop the node, move its pieces there (the whole folder, with its "
        f"{VERIFICATION_FILE} file), then change the setting"
    )
    try:
        owner = (folder / VERIFICATION_FILE).read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return f"{folder} does not hold this node's pieces (no {VERIFICATION_FILE}): {fix}"
    except (OSError, UnicodeDecodeError) as exc:
        return f"cannot read {folder / VERIFICATION_FILE}: {exc}"
    from nodekeeper.identity import IdentityError, load_identity

    try:
        mine = load_identity(config_dir / IDENTITY_FILE).node_id_text
    except IdentityError as exc:
        return f"cannot tell which node this is: {exc}"
    if owner != mine:
        return f"{folder} holds the pieces of another node ({owner}), not of {mine}"
    return None


def write(config_dir: Path, document: dict[str, Any]) -> None:
    """Replace config.toml atomically, keeping its mode."""
    import tomli_w

    path = config_dir / CONFIG_FILE
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        mode = 0o644
    write_durably(path, tomli_w.dumps(document).encode("utf-8"), mode=mode)
