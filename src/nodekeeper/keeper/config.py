"""The keeper's TOML configuration, validated with pydantic.

Every key has a default that runs the reference storage node with no editing, so an empty
file (or no file) is a valid configuration. Every timing constant is a key, so the tests
run the real mechanisms at a fraction of a second instead of minutes.

Placeholders in paths, commands, URLs and environment values: ``{data_dir}`` (the
keeper's data directory) and ``{config_dir}`` (the node's config directory). Relative paths
are resolved against the directory of the config file, like systemd and nginx do.
"""

from __future__ import annotations

import os
import shutil
import sys
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from nodekeeper import units
from nodekeeper.launcher.textfile import TextDecodeError, read_config_text
from nodekeeper.logs import LogSettings

DEFAULT_STATUS_PORT = 7779


def parse_size(value: Any) -> Any:
    """Bytes from an int or a string like "512 MiB", "2GB", "1.5 GiB"; None stays None
    (the limit is off); anything else is left to pydantic's own type error."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | str):
        return value
    return units.parse_size(value)


Size = Annotated[int | None, BeforeValidator(parse_size), Field(ge=1)]
Seconds = Annotated[float, Field(gt=0)]


class _Section(BaseModel):
    # A misspelt key is an error, not a silently ignored setting.
    model_config = ConfigDict(extra="forbid", frozen=True)


class NodeConfig(_Section):
    command: list[str] = Field(
        default=["storagenode", "run", "--config-dir", "{config_dir}"], min_length=1
    )
    config_dir: str = "{data_dir}/storagenode"
    cwd: str | None = None
    # Added to the keeper's own environment for the node.
    env: dict[str, str] = Field(default_factory=dict)
    # The node's "I am not set up" exit code (EX_CONFIG from sysexits.h).
    not_set_up_exit_code: int = Field(default=78, ge=1, le=255)
    # While not set up: how often to try again, and how often to say so in the log.
    setup_recheck_seconds: Seconds = 60.0
    needs_setup_log_seconds: Seconds = 600.0


class ProbeConfig(_Section):
    kind: Literal["http", "tcp", "process"] = "http"
    url: str = "http://127.0.0.1:7778/pulse"
    # host:port for kind = "tcp".
    address: str = "127.0.0.1:7778"
    interval_seconds: Seconds = 10.0
    timeout_seconds: Seconds = 5.0
    failure_threshold: int = Field(default=3, ge=1)
    start_grace_seconds: float = Field(default=300.0, ge=0)

    @model_validator(mode="after")
    def _tcp_address(self) -> ProbeConfig:
        if self.kind == "tcp":
            _split_host_port(self.address, "probe.address")
        return self


class RestartConfig(_Section):
    backoff_initial_seconds: Seconds = 1.0
    backoff_max_seconds: Seconds = 300.0
    backoff_reset_after_seconds: Seconds = 600.0
    crash_loop_crashes: int = Field(default=5, ge=1)
    crash_loop_window_seconds: Seconds = 600.0


class StopConfig(_Section):
    timeout_seconds: Seconds = 30.0
    # The node's graceful-stop endpoint; "" to use only the OS signal.
    shutdown_url: str = "http://127.0.0.1:7778/shutdown"
    shutdown_token_file: str = "{config_dir}/shutdown.token"


class LimitsConfig(_Section):
    # Soft limit: this many readings in a row above it → graceful restart.
    memory_soft: Size = None
    memory_soft_readings: int = Field(default=3, ge=1)
    # Hard limit, enforced by the OS (cgroup v2 memory.max, RLIMIT_AS, Job Object).
    memory_hard: Size = None
    sample_interval_seconds: Seconds = 5.0
    # A count of cores (the first N the keeper may use) or a list of core numbers.
    cpu_cores: int | list[Annotated[int, Field(ge=0)]] | None = None
    # Percent of one core, e.g. 150 = one and a half cores.
    cpu_rate_percent: Annotated[float, Field(gt=0)] | None = None
    below_normal_priority: bool = True
    # Set GOMAXPROCS in the node's environment to the number of cores it may use.
    gomaxprocs: bool = True

    @model_validator(mode="after")
    def _check(self) -> LimitsConfig:
        if isinstance(self.cpu_cores, int) and self.cpu_cores < 1:
            raise ValueError("limits.cpu_cores must be a count >= 1 or a list of core numbers")
        if isinstance(self.cpu_cores, list) and not self.cpu_cores:
            raise ValueError("limits.cpu_cores must not be an empty list")
        return self


class StatusConfig(_Section):
    # Loopback only: the status API has no authentication.
    listen: str = f"127.0.0.1:{DEFAULT_STATUS_PORT}"

    @field_validator("listen")
    @classmethod
    def _loopback(cls, value: str) -> str:
        host, _ = _split_host_port(value, "status.listen")
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError("must be a loopback address (127.0.0.1, ::1): no authentication")
        return value


class UpdateConfig(_Section):
    """``[update]``: present = the keeper installs and updates the node itself.

    Without this table the keeper runs ``node.command`` as it is (unmanaged)."""

    # The control plane: its ``/`` announces versions, ``/v1/reports`` takes reports.
    server: str
    process: str = "storagenode"
    # Arguments after the installed artifact's own command (its manifest says how to run
    # it); the placeholders work as in node.command.
    args: list[str] = Field(default=["run", "--config-dir", "{config_dir}"])
    # The announcement's platform key; default: this machine's (e.g. linux_amd64).
    platform: str | None = None
    # The node ID for the rollout math; default: read from {config_dir}/identity.key.
    node_id: str | None = None
    interval_seconds: Seconds = 900.0
    jitter: float = Field(default=0.1, ge=0, lt=1)
    # "random": the first check comes uniformly in [0, interval) after start (a fleet
    # rebooted together spreads out); "now": at once. Nothing installed yet → at once.
    first_check: Literal["random", "now"] = "random"
    backoff_initial_seconds: Seconds = 30.0
    backoff_max_seconds: Seconds = 3600.0
    # A new version must answer its pulse for this long, with no exit, to be committed.
    probation_seconds: Seconds = 60.0
    # ...and must first answer within this long after its start (migrations included).
    probation_start_timeout_seconds: Seconds = 300.0
    preflight_timeout_seconds: Seconds = 30.0
    connect_timeout_seconds: Seconds = 10.0
    read_timeout_seconds: Seconds = 30.0
    # A check and a report send must be over within this long, however slowly the server
    # answers (the read timeout is per read). Downloads have a speed floor instead.
    request_deadline_seconds: Seconds = 60.0
    ca_bundle: str | None = None
    # The node's "database is newer than this code" exit code (the reference node's 65):
    # an old version refusing to start after a failed update means a migration ran.
    downgrade_refused_exit_code: int = Field(default=65, ge=1, le=255)

    @field_validator("server")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL of the control plane")
        return value.rstrip("/")


class KeeperConfig(_Section):
    data_dir: str | None = None
    node: NodeConfig = Field(default_factory=NodeConfig)
    probe: ProbeConfig = Field(default_factory=ProbeConfig)
    restart: RestartConfig = Field(default_factory=RestartConfig)
    stop: StopConfig = Field(default_factory=StopConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    status: StatusConfig = Field(default_factory=StatusConfig)
    logs: LogSettings = Field(default_factory=LogSettings)
    update: UpdateConfig | None = None

    # Filled in by load_config(); not a TOML key.
    source: Path | None = Field(default=None, exclude=True)

    # -- resolved values ----------------------------------------------------------------

    @property
    def base_dir(self) -> Path:
        return self.source.parent if self.source else Path.cwd()

    def data_path(self) -> Path:
        return self._absolute(self.data_dir) if self.data_dir else default_data_dir()

    def node_config_path(self) -> Path:
        return self._absolute(self.node.config_dir.replace("{data_dir}", str(self.data_path())))

    def logs_path(self) -> Path:
        return self.data_path() / "logs"

    def state_path(self) -> Path:
        return self.data_path() / "state"

    def update_args(self) -> list[str]:
        assert self.update is not None
        return [self.expand(a) for a in self.update.args]

    def expand(self, text: str) -> str:
        """Replace ``{data_dir}`` and ``{config_dir}`` in ``text``."""
        out = text.replace("{data_dir}", str(self.data_path()))
        return out.replace("{config_dir}", str(self.node_config_path()))

    def node_argv(self) -> list[str]:
        argv = [self.expand(a) for a in self.node.command]
        argv[0] = resolve_program(argv[0], self.base_dir)
        return argv

    def node_env(self) -> dict[str, str]:
        return {k: self.expand(v) for k, v in self.node.env.items()}

    def node_cwd(self) -> Path | None:
        return self._absolute(self.expand(self.node.cwd)) if self.node.cwd else None

    def shutdown_token_path(self) -> Path:
        return self._absolute(self.expand(self.stop.shutdown_token_file))

    def status_host_port(self) -> tuple[str, int]:
        return _split_host_port(self.status.listen, "status.listen")

    def tcp_probe_host_port(self) -> tuple[str, int]:
        return _split_host_port(self.probe.address, "probe.address")

    def _absolute(self, text: str) -> Path:
        path = Path(os.path.expanduser(text))
        return path if path.is_absolute() else self.base_dir / path


class ConfigError(Exception):
    """A configuration the keeper cannot run with; the message names file, key and rule."""


def default_data_dir() -> Path:
    """Where the keeper keeps logs, state and (by default) the node's config.

    Windows: %ProgramData%\\nodekeeper (the service runs as LocalSystem); POSIX as root:
    /var/lib/nodekeeper (FHS); otherwise the user's data directory.
    """
    import platformdirs

    if sys.platform == "win32":
        return platformdirs.site_data_path("nodekeeper", appauthor=False)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/nodekeeper")
    return platformdirs.user_data_path("nodekeeper", appauthor=False)


def resolve_program(program: str, base_dir: Path) -> str:
    """Find a bare program name next to the running Python first (the venv's bin or the
    Windows runtime's Scripts dir: a service has no useful PATH), then on PATH."""
    if os.sep in program or (os.altsep and os.altsep in program):
        path = Path(os.path.expanduser(program))
        return str(path if path.is_absolute() else base_dir / path)
    here = Path(sys.executable).parent
    for folder in (here, here / "Scripts"):
        found = shutil.which(program, path=str(folder))
        if found:
            return found
    return shutil.which(program) or program


def _split_host_port(text: str, key: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{key} must be HOST:PORT, e.g. 127.0.0.1:{DEFAULT_STATUS_PORT}")
    return host, int(port)


def load_config(path: Path | None) -> KeeperConfig:
    """Read and validate ``path``; None gives the defaults. Raises :class:`ConfigError`."""
    if path is None:
        return KeeperConfig()
    try:
        # Not tomllib.load: that takes only UTF-8, and Windows editors write UTF-16.
        raw = tomllib.loads(read_config_text(path))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory; --config names the TOML file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except TextDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        config = KeeperConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(path, exc)) from None
    return config.model_copy(update={"source": path.resolve()})


# pydantic puts the union member or validator it tried into the location; not a key.
_TAGS = {"int", "float", "str", "bool", "none", "constrained-int", "constrained-float"}


def _is_tag(part: str) -> bool:
    return part in _TAGS or "[" in part or part.startswith(("function-", "constrained-"))


def _key_of(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts[-1:] = [f"{parts[-1]}[{part}]"] if parts else [str(part)]
        elif not _is_tag(part):
            parts.append(part)
    return ".".join(parts) or "(top level)"


def format_validation_error(path: Path, exc: ValidationError) -> str:
    """One line per problem: ``FILE: key.path: what is allowed (got VALUE)``."""
    lines = []
    for err in exc.errors():
        key = _key_of(err["loc"])
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        else:
            message = err["msg"].removeprefix("Value error, ")
        got = err.get("input")
        shown = "" if err["type"] == "missing" or isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"{path}: {key}: {message}{shown}")
    # pydantic reports one error per union member; keep each distinct line once.
    return "\n".join(dict.fromkeys(lines))
