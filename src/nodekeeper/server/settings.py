"""Settings of one control-plane replica."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .auth import AdminToken
from .rollout_health import HealthRule

if TYPE_CHECKING:
    from nodekeeper.alerts.dispatch import AlertDispatcher
from .reachability_rules import IPNetwork, Limits

GiB = 1 << 30


@dataclass
class ServerSettings:
    db_url: str
    data_dir: Path
    public_url: str  # how nodes reach this server (or the CDN/proxy in front of it)
    admin_token: AdminToken
    artifact_dir: Path | None = None  # default: data_dir / "artifacts"
    poll_interval: float = 1.0  # how often a replica looks for changes made by others
    ramp_tick: float = 60.0  # the ramp advances in steps of this many seconds
    max_artifact_size: int = 4 * GiB
    report_rate_per_minute: int = 30
    # /docs and /redoc load Swagger UI and ReDoc from a CDN in the operator's browser
    # (offline they fail, online they tell a third party who reads the admin API), so
    # they are off unless asked for; /openapi.json is always served, from here.
    docs: bool = False
    # The health check of running rollouts (decision 078): how often each replica judges
    # them, and the rule's parameters (decision 075's defaults).
    health_interval: float = 60.0
    health_rule: HealthRule = field(default_factory=HealthRule)
    # Where an auto-pause is told (`server run --alerts-config`); None: only the log,
    # the audit log, `rollout status` and /metrics say so.
    alerts: AlertDispatcher | None = None
    # The reachability dial-back (decision 082): X-Forwarded-For is believed only from
    # these (`server run --trusted-proxy`), and its rate limits.
    trusted_proxies: tuple[IPNetwork, ...] = ()
    reachability: Limits = field(default_factory=Limits)
    # Signed releases (decision 084): where the online TUF keys (snapshot, timestamp) are,
    # read at each signing; how often each replica looks whether they are due a re-sign.
    tuf_online_keys: Path | None = None
    tuf_interval: float = 60.0
    clock: Callable[[], float] = field(default=time.time)

    def __post_init__(self) -> None:
        self.public_url = self.public_url.rstrip("/")
        if self.artifact_dir is None:
            self.artifact_dir = self.data_dir / "artifacts"
