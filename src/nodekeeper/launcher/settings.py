"""The launcher's settings: its flags, plus two keys read from the keeper's config.

The launcher reads ``data_dir`` and ``status.listen`` from the keeper's TOML itself (with
``tomllib``, no pydantic), the same way the keeper resolves them: ``data_dir`` relative
to the config file's directory, defaults as in ``nodekeeper.keeper.config``. Its own
timings are flags, not config keys: the keeper's config refuses unknown keys, and a
keeper release must never be able to break the launcher by changing its config schema.
"""

from __future__ import annotations

import os
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from . import protocol
from .textfile import TextDecodeError, read_config_text

DEFAULT_STATUS = ("127.0.0.1", 7779)  # nodekeeper.keeper.config.DEFAULT_STATUS_PORT


@dataclass(frozen=True)
class Settings:
    config: Path | None  # the keeper's config, passed to it as --config
    data_dir: Path
    status_host: str
    status_port: int
    python: str = sys.executable
    probation_seconds: float = 60.0
    probe_interval_seconds: float = 1.0
    probe_timeout_seconds: float = 2.0
    backoff_initial_seconds: float = 1.0
    backoff_max_seconds: float = 60.0
    backoff_reset_seconds: float = 600.0
    # The keeper's own stop of the node takes up to stop.timeout_seconds (30 s by default)
    # before it kills the tree; the launcher waits a little longer than that.
    stop_timeout_seconds: float = 45.0
    # Linux: the launcher's cgroup is delegated to it (a systemd unit with Delegate=):
    # move into a leaf so the node's cgroup can have controllers (launcher/cgroupv2.py).
    delegated_cgroup: bool = False

    @property
    def state_dir(self) -> Path:
        return protocol.state_dir(self.data_dir)

    @property
    def versions_dir(self) -> Path:
        return protocol.versions_dir(self.data_dir)

    def keeper_args(self) -> list[str]:
        return ["--config", str(self.config)] if self.config is not None else []


class SettingsError(ValueError):
    pass


def default_data_dir() -> Path:
    """The keeper's default data dir (``nodekeeper.keeper.config.default_data_dir``,
    which uses platformdirs), computed with the standard library."""
    if sys.platform == "win32":
        base = (
            os.environ.get("PROGRAMDATA") or os.environ.get("ALLUSERSPROFILE") or r"C:\ProgramData"
        )
        return Path(base) / "nodekeeper"
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/nodekeeper")
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "nodekeeper"
    xdg = os.environ.get("XDG_DATA_HOME", "").strip()
    return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "nodekeeper"


def from_keeper_config(config: Path | None) -> tuple[Path | None, tuple[str, int]]:
    """``(data_dir or None, (status host, port))`` as the keeper would read them."""
    if config is None:
        return None, DEFAULT_STATUS
    try:
        # As the keeper reads it: Windows editors save UTF-16 or a UTF-8 BOM.
        raw = tomllib.loads(read_config_text(config))
    except OSError as exc:
        raise SettingsError(f"{config}: cannot read: {exc.strerror or exc}") from None
    except TextDecodeError as exc:
        raise SettingsError(f"{config}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{config}: not valid TOML: {exc}") from None
    data_dir = raw.get("data_dir")
    resolved: Path | None = None
    if isinstance(data_dir, str) and data_dir:
        path = Path(os.path.expanduser(data_dir))
        resolved = path if path.is_absolute() else config.resolve().parent / path
    status = raw.get("status", {})
    listen = status.get("listen") if isinstance(status, dict) else None
    return resolved, split_host_port(listen) if isinstance(listen, str) else DEFAULT_STATUS


def split_host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SettingsError(f"status.listen must be HOST:PORT (got {text!r})")
    return ("127.0.0.1" if host == "localhost" else host), int(port)
