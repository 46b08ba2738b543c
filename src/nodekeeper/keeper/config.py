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

from nodekeeper import node_settings, units
from nodekeeper.alerts.config import AlertsConfig
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
        default=["storagenode", "run", "--config-dir", "{config_dir}"],
        min_length=1,
        description="The node's command line when the keeper does not install it itself (no "
        "[update] table). A bare program name is looked up next to the running Python first "
        "(a service has no useful PATH), then on PATH.",
    )
    config_dir: str = Field(
        default="{data_dir}/storagenode",
        description="The node's config directory (config.toml, identity.key, shutdown.token); "
        "{config_dir} in other values.",
    )
    cwd: str | None = Field(
        default=None, description="Working directory of the node; unset: the keeper's own."
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Added to the keeper's own environment for the node.",
    )
    not_set_up_exit_code: int = Field(
        default=78,
        ge=1,
        le=255,
        description='The node\'s "I am not set up" exit code (EX_CONFIG from sysexits.h): '
        "the state becomes needs-setup, with no backoff and no crash count.",
    )
    setup_recheck_seconds: Seconds = Field(
        default=60.0,
        description="While the node is not set up: how often it is started again to see "
        "whether setup happened.",
    )
    needs_setup_log_seconds: Seconds = Field(
        default=600.0,
        description="While the node is not set up: how often the log says so.",
    )
    dashboard_url: str | None = Field(
        default=None,
        description="The node's own dashboard (http:// or https://), which the tray app's "
        '"Open dashboard" opens and the status shows; unset: none. The installer writes the '
        "reference node's: http://127.0.0.1:<control port>/dashboard.",
    )

    @field_validator("dashboard_url")
    @classmethod
    def _dashboard(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from urllib.parse import urlsplit

        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                "must be an http:// or https:// URL, e.g. http://127.0.0.1:7778/dashboard"
            )
        return value


class ProbeConfig(_Section):
    kind: Literal["http", "tcp", "process"] = Field(
        default="http",
        description="How health is probed: an HTTP GET of url (the node's pulse), a TCP "
        "connect to address, or only whether the process runs.",
    )
    url: str = Field(
        default="http://127.0.0.1:7778/pulse",
        description='The pulse URL for kind = "http"; a 2xx answer is healthy.',
    )
    address: str = Field(default="127.0.0.1:7778", description='HOST:PORT for kind = "tcp".')
    interval_seconds: Seconds = Field(
        default=10.0,
        description="Time between probes (a fixed-rate schedule); until the first success "
        "the node is probed every min(interval, 1 s).",
    )
    timeout_seconds: Seconds = Field(default=5.0, description="How long one probe may take.")
    failure_threshold: int = Field(
        default=3,
        ge=1,
        description="Failed probes in a row that make the node hung (it is then restarted).",
    )
    start_grace_seconds: float = Field(
        default=300.0,
        ge=0,
        description="After a start, failed probes do not count for this long or until the "
        "first success (Kubernetes' startup-probe rule).",
    )

    @model_validator(mode="after")
    def _tcp_address(self) -> ProbeConfig:
        if self.kind == "tcp":
            _split_host_port(self.address, "probe.address")
        return self


class RestartConfig(_Section):
    backoff_initial_seconds: Seconds = Field(
        default=1.0, description="Delay before the first restart after a failure; it doubles."
    )
    backoff_max_seconds: Seconds = Field(
        default=300.0, description="The longest delay between restarts; restarts never stop."
    )
    backoff_reset_after_seconds: Seconds = Field(
        default=600.0,
        description="Healthy this long (from the first passing probe) resets the backoff.",
    )
    crash_loop_crashes: int = Field(
        default=5,
        ge=1,
        description="This many failures within crash_loop_window_seconds flag a crash loop "
        "(status and error index; restarts go on).",
    )
    crash_loop_window_seconds: Seconds = Field(
        default=600.0, description="The window for crash_loop_crashes."
    )


class StopConfig(_Section):
    timeout_seconds: Seconds = Field(
        default=30.0,
        description="From the start of a graceful stop until the whole process tree is killed.",
    )
    shutdown_url: str = Field(
        default="http://127.0.0.1:7778/shutdown",
        description='The node\'s graceful-stop endpoint (POST with the token); "" to use only '
        "the OS signal (SIGTERM to the process group, CTRL_BREAK on Windows).",
    )
    shutdown_token_file: str = Field(
        default="{config_dir}/shutdown.token",
        description="The bearer token for shutdown_url; when missing, the signal is used.",
    )


class LimitsConfig(_Section):
    memory_soft: Size = Field(
        default=None,
        description='Soft memory limit (bytes, or a size like "1.5 GiB"): '
        "memory_soft_readings readings in a row above it → graceful restart. Unset: off.",
    )
    memory_soft_readings: int = Field(
        default=3, ge=1, description="Readings in a row over memory_soft before a restart."
    )
    memory_hard: Size = Field(
        default=None,
        description="Hard memory limit of the node's whole tree, enforced by the OS (cgroup "
        "v2 memory.max, else RLIMIT_AS, which caps address space; Job Object on Windows). "
        "Unset: off.",
    )
    sample_interval_seconds: Seconds = Field(
        default=5.0, description="How often memory and CPU are read."
    )
    cpu_cores: int | list[Annotated[int, Field(ge=0)]] | None = Field(
        default=None,
        description="A count of cores (the first N the keeper may use) or a list of core "
        "numbers; unset: all.",
    )
    cpu_rate_percent: Annotated[float, Field(gt=0)] | None = Field(
        default=None,
        description="CPU cap in percent of one core (150 = one and a half cores), where the "
        "OS has one (cgroup v2 cpu.max, Job Object rate control); unset: off.",
    )
    below_normal_priority: bool = Field(
        default=True, description="Run the node at nice 10 / below-normal priority."
    )
    gomaxprocs: bool = Field(
        default=True,
        description="Set GOMAXPROCS in the node's environment to the number of cores it may "
        "use (or the rate cap rounded up).",
    )

    @model_validator(mode="after")
    def _check(self) -> LimitsConfig:
        if isinstance(self.cpu_cores, int) and self.cpu_cores < 1:
            raise ValueError("limits.cpu_cores must be a count >= 1 or a list of core numbers")
        if isinstance(self.cpu_cores, list) and not self.cpu_cores:
            raise ValueError("limits.cpu_cores must not be an empty list")
        return self


class StatusConfig(_Section):
    listen: str = Field(
        default=f"127.0.0.1:{DEFAULT_STATUS_PORT}",
        description="HOST:PORT of the status API (/status, /metrics, /update/check). "
        "Loopback only: the API has no authentication.",
    )

    @field_validator("listen")
    @classmethod
    def _loopback(cls, value: str) -> str:
        host, _ = _split_host_port(value, "status.listen")
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError("must be a loopback address (127.0.0.1, ::1): no authentication")
        return value


class FirewallConfig(_Section):
    """``[firewall]``: whether inbound traffic reaches the node's port (decision 065)."""

    enabled: bool = Field(
        default=True,
        description="Check whether the firewall lets inbound TCP and UDP (QUIC) reach the "
        "node's port: at start, then every interval_seconds; the verdict is in the status, "
        "and a blocked port goes to the error index once per change. false: never check.",
    )
    interval_seconds: Seconds = Field(
        default=3600.0,
        description="Time between checks; a change of the node's port or program (an update) "
        "is checked within a minute.",
    )
    timeout_seconds: Seconds = Field(
        default=30.0,
        description="How long one check may take (the Windows Firewall query, or the Linux "
        "tools together); what has not answered by then is killed and the verdict is unknown.",
    )
    port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="The node's public port. Unset: read from the node's config dir "
        "(config.toml listen, or a Storj node's config.yaml server.address).",
    )
    program: str | None = Field(
        default=None,
        description="The program the firewall rules must admit (a full path). Unset: the "
        "node's program as the keeper runs it (node.command, or the installed version's).",
    )


class ReachabilityConfig(_Section):
    """``[reachability]``: the control plane dials the node back from outside (decision 082)."""

    enabled: bool = Field(
        default=True,
        description="Ask the control plane (update.server; without [update] there is none) "
        "to dial the node's public address back over TCP and QUIC/UDP: once the node is "
        "healthy, then every interval_seconds. The result is in the status, the tray and the "
        "metrics; becoming unreachable is reported. false: never ask.",
    )
    interval_seconds: Seconds = Field(
        default=21600.0,
        description="Time between checks (6 hours). The control plane allows one check per "
        "node per 10 minutes and says when to come back (Retry-After), which is honoured.",
    )
    retry_seconds: Seconds = Field(
        default=900.0,
        description="After a check that failed (no answer, refused) without a Retry-After: "
        "how long until the next try.",
    )
    address: str | None = Field(
        default=None,
        description="The node's public HOST:PORT to have dialled. Unset: the node's external "
        "address ([operator] external_address in the reference node's config.toml, or a "
        "Storj node's contact.external-address). The control plane dials only the address "
        "the keeper's request comes from, so HOST must name this machine's public address.",
    )
    request_deadline_seconds: Seconds = Field(
        default=30.0,
        description="The whole request, the control plane's dials included, must be over "
        "within this long.",
    )

    @field_validator("address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return node_settings.check_external_address(value)
        except node_settings.InvalidSetting as exc:
            raise ValueError(str(exc)) from None


class UpdateConfig(_Section):
    """``[update]``: present = the keeper installs and updates the node itself.

    Without this table the keeper runs ``node.command`` as it is (unmanaged)."""

    server: str = Field(
        description="The control plane's http(s) URL: its / announces versions, "
        "/v1/reports takes reports. Required.",
    )
    process: str = Field(
        default="storagenode", description="The process name to follow in the announcement."
    )
    args: list[str] = Field(
        default=["run", "--config-dir", "{config_dir}"],
        description="Arguments after the installed artifact's own command (its manifest says "
        "how to run it); the placeholders work as in node.command.",
    )
    platform: str | None = Field(
        default=None,
        description="The announcement's platform key; unset: this machine's (e.g. linux_amd64).",
    )
    node_id: str | None = Field(
        default=None,
        description="The node ID for the rollout math; unset: read from "
        "{config_dir}/identity.key (without one only the minimum applies).",
    )
    interval_seconds: Seconds = Field(default=900.0, description="Time between checks.")
    jitter: float = Field(
        default=0.1,
        ge=0,
        lt=1,
        description="Each interval is interval × (1 ± jitter), so a fleet never checks in "
        "lockstep.",
    )
    first_check: Literal["random", "now"] = Field(
        default="random",
        description='"random": the first check comes at a random time in [0, interval × (1 + '
        "jitter)) after start, drawn so that a fleet rebooted together checks at a steady rate "
        'from the first minute (decision 081); "now": at once. Nothing installed yet → at once.',
    )
    backoff_initial_seconds: Seconds = Field(
        default=30.0, description="Delay after a failed check; it doubles with each failure."
    )
    backoff_max_seconds: Seconds = Field(
        default=3600.0, description="The longest delay after failed checks."
    )
    probation_seconds: Seconds = Field(
        default=60.0,
        description="A new version must answer its pulse for this long, with no exit, to be "
        "committed.",
    )
    probation_start_timeout_seconds: Seconds = Field(
        default=300.0,
        description="...and must first answer within this long after its start (migrations "
        "included).",
    )
    preflight_timeout_seconds: Seconds = Field(
        default=30.0,
        description="How long `<artifact> version` may take before the new version fails "
        "its preflight.",
    )
    connect_timeout_seconds: Seconds = Field(
        default=10.0, description="TCP/TLS connect timeout of checks and downloads."
    )
    read_timeout_seconds: Seconds = Field(
        default=30.0,
        description="Longest wait for the next bytes of a check or download (a stalled "
        "download is kept and resumed next cycle).",
    )
    request_deadline_seconds: Seconds = Field(
        default=60.0,
        description="A check and a report send must be over within this long, however "
        "slowly the server answers (the read timeout is per read). Downloads have a speed "
        "floor instead.",
    )
    ca_bundle: str | None = Field(
        default=None,
        description="Extra CA roots (PEM file) for TLS to the control plane and artifact "
        "hosts; unset: the system's roots.",
    )
    quiet_window: str | None = Field(
        default=None,
        description='A daily local time window with no updates, "HH:MM-HH:MM" (e.g. '
        '"18:00-23:00"; past midnight wraps). Checks go on; an update due inside it waits '
        "until it ends, except below the network's minimum version. The operator's own "
        "window (tray, `nodekeeper update quiet-window`; state/maintenance.json) wins.",
    )
    trusted_root: str | None = Field(
        default=None,
        description="Signed releases (decision 085): the TUF root.json trust starts from "
        "(placeholders as in node.command; the MSI installs its own). Set: every artifact, "
        "the node's and the keeper's own, must be signed in the control plane's TUF "
        "metadata with the announced size and sha256, or it is not downloaded. Unset: "
        "the announcement's sha256 alone (status warns). Newer roots are kept in "
        "{data_dir}/state/tuf.",
    )
    tuf_metadata_url: str | None = Field(
        default=None,
        description="Where the TUF metadata is served; unset: server + /tuf/metadata/.",
    )
    downgrade_refused_exit_code: int = Field(
        default=65,
        ge=1,
        le=255,
        description='The node\'s "database is newer than this code" exit code (the '
        "reference node's 65): an old version refusing to start after a failed update means "
        "a migration ran, so the keeper holds on the new version.",
    )

    @field_validator("quiet_window")
    @classmethod
    def _window(cls, value: str | None) -> str | None:
        if value is not None:
            from nodekeeper.updater.maintenance import QuietWindow

            QuietWindow.parse(value)  # its ValueError says how to write it
        return value

    @field_validator("tuf_metadata_url")
    @classmethod
    def _metadata_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            node_settings.check_server_url(value)
        except node_settings.InvalidSetting as exc:
            raise ValueError(str(exc)) from None
        return value.rstrip("/") + "/"

    @field_validator("server")
    @classmethod
    def _http(cls, value: str) -> str:
        # The installer and the tray check SERVER_URL with the same function.
        try:
            return node_settings.check_server_url(value)
        except node_settings.InvalidSetting as exc:
            raise ValueError(str(exc)) from None


class KeeperConfig(_Section):
    data_dir: str | None = Field(
        default=None,
        description="Logs, state and (by default) the node's config dir. Unset: "
        "%ProgramData%\\nodekeeper on Windows, /var/lib/nodekeeper as root, else the "
        "user's data directory.",
    )
    node: NodeConfig = Field(default_factory=NodeConfig)
    probe: ProbeConfig = Field(default_factory=ProbeConfig)
    restart: RestartConfig = Field(default_factory=RestartConfig)
    stop: StopConfig = Field(default_factory=StopConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    status: StatusConfig = Field(default_factory=StatusConfig)
    logs: LogSettings = Field(default_factory=LogSettings)
    firewall: FirewallConfig = Field(default_factory=FirewallConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    reachability: ReachabilityConfig = Field(default_factory=ReachabilityConfig)
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

    def trusted_root_path(self) -> Path | None:
        """``[update] trusted_root`` expanded and absolute; None when unset."""
        root = self.update.trusted_root if self.update else None
        return self._absolute(self.expand(root)) if root else None

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

    def alerts_secrets_path(self) -> Path | None:
        """``[alerts] secrets_file`` with placeholders replaced, absolute; None if unset."""
        secrets = self.alerts.secrets_file
        return self._absolute(self.expand(secrets)) if secrets else None

    def alerts_state_path(self) -> Path:
        """The alert debounce state, so that a restarted keeper does not say it again."""
        return self.state_path() / "alerts.json"

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
    config = config.model_copy(update={"source": path.resolve()})
    _check_trusted_root(config, path)
    return config


def _check_trusted_root(config: KeeperConfig, path: Path) -> None:
    """A keeper told to verify releases must start with a root it can verify against:
    refused at load, not at the first update. Loads tuf only when the key is set."""
    root = config.trusted_root_path()
    if root is None:
        return
    from nodekeeper.updater.trust import load_trusted_root

    try:
        load_trusted_root(root)
    except ValueError as exc:
        raise ConfigError(f"{path}: update.trusted_root: {exc}") from None


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
