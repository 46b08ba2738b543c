"""The node's config dir: ``config.toml``, the identity key and the shutdown token.

``config.toml``'s optional ``[operator]`` table (wallet, email, external_address) holds
the operator's settings; they are checked by :mod:`nodekeeper.node_settings` when setup
writes them and again when the node reads them, so an edit is held to the same rules.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nodekeeper.launcher.textfile import TextDecodeError, read_config_text
from storagenode.addresses import Address, InvalidAddressError, parse_address
from storagenode.log import LEVELS

CONFIG_FILE = "config.toml"
IDENTITY_FILE = "identity.key"  # nodekeeper.node_settings.IDENTITY_FILE: the same file
TOKEN_FILE = "shutdown.token"
CONFIG_FORMAT = 1

DEFAULT_LISTEN = "127.0.0.1:28967"
DEFAULT_CONTROL_LISTEN = "127.0.0.1:7778"


class NotConfiguredError(Exception):
    """The config dir has no complete setup: the node needs ``storagenode setup``."""


@dataclass(frozen=True)
class NodeConfig:
    config_dir: Path
    storage_dir: Path
    allocated_bytes: int
    listen: Address
    control_listen: Address
    log_level: str = "INFO"
    # The operator's settings ([operator]); None: not given at setup.
    wallet: str | None = None
    email: str | None = None
    external_address: str | None = None

    @property
    def identity_path(self) -> Path:
        return self.config_dir / IDENTITY_FILE

    @property
    def token_path(self) -> Path:
        return self.config_dir / TOKEN_FILE

    @property
    def operator(self) -> dict[str, str]:
        """The [operator] settings that are set (TOML has no null)."""
        values = (
            ("wallet", self.wallet),
            ("email", self.email),
            ("external_address", self.external_address),
        )
        return {key: value for key, value in values if value is not None}

    def to_toml_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "config_format": CONFIG_FORMAT,
            "storage_dir": str(self.storage_dir),
            "allocated_bytes": self.allocated_bytes,
            "listen": str(self.listen),
            "control_listen": str(self.control_listen),
            "log_level": self.log_level,
        }
        if self.operator:
            document["operator"] = self.operator
        return document


def setup_hint(config_dir: Path) -> str:
    return (
        f"not configured: run storagenode setup --config-dir {config_dir} "
        "--storage-dir ... --allocated ..."
    )


def load_config(config_dir: Path) -> NodeConfig:
    """Read and validate the config; NotConfiguredError says what is missing or wrong."""
    path = config_dir / CONFIG_FILE
    if not path.is_file() or not (config_dir / IDENTITY_FILE).is_file():
        raise NotConfiguredError(setup_hint(config_dir))
    try:
        # UTF-16 and a BOM are accepted: operators edit this file with Windows editors.
        raw = tomllib.loads(read_config_text(path))
    except OSError as exc:
        raise NotConfiguredError(f"not configured: cannot read {path}: {exc}") from None
    except (TextDecodeError, tomllib.TOMLDecodeError) as exc:
        raise NotConfiguredError(f"not configured: {path}: {exc}") from None
    return config_from_dict(config_dir, raw, path)


def config_from_dict(config_dir: Path, raw: dict[str, Any], source: Path) -> NodeConfig:
    def bad(why: str) -> NotConfiguredError:
        return NotConfiguredError(f"not configured: {source}: {why}")

    fmt = raw.get("config_format")
    if fmt != CONFIG_FORMAT:
        raise bad(f"config_format is {fmt!r}, this node reads format {CONFIG_FORMAT}")
    storage_dir = raw.get("storage_dir")
    if not isinstance(storage_dir, str) or not storage_dir:
        raise bad("storage_dir must be a path")
    allocated = raw.get("allocated_bytes")
    if not isinstance(allocated, int) or isinstance(allocated, bool) or allocated <= 0:
        raise bad("allocated_bytes must be a positive whole number of bytes")
    level = str(raw.get("log_level", "INFO")).upper()
    if level not in LEVELS:
        raise bad(f"log_level must be one of {', '.join(LEVELS)}")
    try:
        listen = parse_address(str(raw.get("listen", DEFAULT_LISTEN)))
        control = parse_address(str(raw.get("control_listen", DEFAULT_CONTROL_LISTEN)))
    except InvalidAddressError as exc:
        raise bad(str(exc)) from None
    checked = _operator(raw.get("operator", {}), bad)
    return NodeConfig(
        config_dir=config_dir,
        storage_dir=Path(storage_dir),
        allocated_bytes=allocated,
        listen=listen,
        control_listen=control,
        log_level=level,
        wallet=checked.get("wallet"),
        email=checked.get("email"),
        external_address=checked.get("external_address"),
    )


def _operator(table: object, bad: Callable[[str], NotConfiguredError]) -> dict[str, str]:
    """[operator]'s values, each held to the check setup used (nodekeeper.node_settings)."""
    if not isinstance(table, dict):
        raise bad("operator must be a table: [operator] with wallet, email, external_address")
    if not table:
        return {}
    # Imported here, not at the top: `storagenode version` (the keeper's preflight) imports
    # this module and should not pay for the checks.
    from nodekeeper import node_settings

    checks = {
        "wallet": node_settings.check_wallet,
        "email": node_settings.check_email,
        "external_address": node_settings.check_external_address,
    }
    checked: dict[str, str] = {}
    for key, check in checks.items():
        if key not in table:
            continue
        value = table[key]
        if not isinstance(value, str):
            raise bad(f"[operator] {key} must be a string in quotes")
        try:
            checked[key] = check(value)
        except node_settings.InvalidSetting as exc:
            raise bad(f"[operator] {key}: {exc}") from None
    return checked


def render_config(config: NodeConfig) -> bytes:
    import tomli_w  # only `setup` writes TOML; keep it off the start path of `run`

    return tomli_w.dumps(config.to_toml_dict()).encode("utf-8")
