"""The node's config dir: ``config.toml``, the identity key and the shutdown token."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nodekeeper.launcher.textfile import TextDecodeError, read_config_text
from storagenode.addresses import Address, InvalidAddressError, parse_address
from storagenode.log import LEVELS

CONFIG_FILE = "config.toml"
IDENTITY_FILE = "identity.key"
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

    @property
    def identity_path(self) -> Path:
        return self.config_dir / IDENTITY_FILE

    @property
    def token_path(self) -> Path:
        return self.config_dir / TOKEN_FILE

    def to_toml_dict(self) -> dict[str, Any]:
        return {
            "config_format": CONFIG_FORMAT,
            "storage_dir": str(self.storage_dir),
            "allocated_bytes": self.allocated_bytes,
            "listen": str(self.listen),
            "control_listen": str(self.control_listen),
            "log_level": self.log_level,
        }


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
    return NodeConfig(
        config_dir=config_dir,
        storage_dir=Path(storage_dir),
        allocated_bytes=allocated,
        listen=listen,
        control_listen=control,
        log_level=level,
    )


def render_config(config: NodeConfig) -> bytes:
    import tomli_w  # only `setup` writes TOML; keep it off the start path of `run`

    return tomli_w.dumps(config.to_toml_dict()).encode("utf-8")
