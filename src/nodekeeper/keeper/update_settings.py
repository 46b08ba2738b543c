"""The keeper config's ``[update]`` table translated into the updater's typed settings,
once, for every part that reads it.

The node's update machine, its check loop, the report sender and the keeper's own update
loop all read ``[update]``. Each of them takes a frozen settings object of its own
(`MachineSettings`, `CycleSettings` with its `CheckTiming`, `ReporterSettings`,
`SelfUpdateSettings`, each with the `DownloadSettings` it uses); this module is the one
place that knows which key goes where, and it does nothing else: no file, no socket, no
clock. The keeper's wiring (`keeper.wiring`) builds the parts from the result.

It is imported only by a keeper that has an ``[update]`` table: the updater's modules it
names are not loaded into a keeper that only supervises (its idle memory, see
bench/supervisor_bench.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nodekeeper.keeper.config import KeeperConfig, UpdateConfig
from nodekeeper.keeper.reports import ReporterSettings
from nodekeeper.selfupdate.runner import SelfUpdateSettings
from nodekeeper.updater.cycle import CycleSettings
from nodekeeper.updater.download import DownloadSettings
from nodekeeper.updater.machine import MachineSettings
from nodekeeper.updater.maintenance import QuietWindow
from nodekeeper.updater.schedule import CheckTiming
from nodekeeper.updater.trust import METADATA_DIR_NAME, TrustSettings
from nodekeeper.version.platforms import this_platform


@dataclass(frozen=True)
class UpdateSettings:
    """Everything ``[update]`` says, as each updating part of the keeper takes it."""

    machine: MachineSettings  # installs, probation and rollback of the node
    check: CycleSettings  # the control plane, the check schedule, the node's identity
    reporter: ReporterSettings  # where reports go and how long a send may take
    self_update: SelfUpdateSettings  # the keeper's own updates (under nodekeeper-launcher)
    # The default quiet window; the operator's own (maintenance.json) wins over it.
    quiet_window: QuietWindow | None = None

    @property
    def process(self) -> str:
        """The node's process name, as announcements and reports name it."""
        return self.machine.process

    @classmethod
    def from_config(cls, config: KeeperConfig) -> UpdateSettings:
        update = config.update
        if update is None:
            raise ValueError("the keeper config has no [update] table")
        ca_bundle = Path(config.expand(update.ca_bundle)) if update.ca_bundle else None
        platform = update.platform or this_platform()
        trust = trust_settings(config)
        return cls(
            machine=MachineSettings(
                process=update.process,
                platform=platform,
                args=config.update_args(),
                probation_seconds=update.probation_seconds,
                start_timeout_seconds=update.probation_start_timeout_seconds,
                preflight_timeout_seconds=update.preflight_timeout_seconds,
                downgrade_refused_exit_code=update.downgrade_refused_exit_code,
                download=DownloadSettings(
                    connect_timeout=update.connect_timeout_seconds,
                    read_timeout=update.read_timeout_seconds,
                    request_deadline=update.request_deadline_seconds,
                    ca_bundle=ca_bundle,
                ),
                trust=trust,
            ),
            check=CycleSettings(
                server=update.server,
                timing=check_timing(update),
                first_check_now=update.first_check == "now",
                node_id=update.node_id,
                node_config_dir=config.node_config_path(),
            ),
            reporter=ReporterSettings(
                server_url=update.server,
                directory=config.state_path() / "reports",
                request_deadline=update.request_deadline_seconds,
            ),
            self_update=SelfUpdateSettings(
                platform=platform,
                data_dir=config.data_path(),
                preflight_timeout_seconds=update.preflight_timeout_seconds,
                # As the keeper's own update loop has always fetched: the check deadline
                # is the client's default, not update.request_deadline_seconds.
                download_settings=DownloadSettings(
                    connect_timeout=update.connect_timeout_seconds,
                    read_timeout=update.read_timeout_seconds,
                    ca_bundle=ca_bundle,
                ),
                trust=trust,  # the same root, cache and lock as the node's
            ),
            quiet_window=QuietWindow.parse(update.quiet_window) if update.quiet_window else None,
        )


def trust_settings(config: KeeperConfig) -> TrustSettings | None:
    """Signed releases (decision 085): None without ``trusted_root`` (unsigned installs,
    as before). One metadata cache for the node's and the keeper's own updates."""
    root = config.trusted_root_path()
    if root is None or config.update is None:
        return None
    from nodekeeper.signing.layout import metadata_url

    return TrustSettings(
        trusted_root=root,
        metadata_url=config.update.tuf_metadata_url or metadata_url(config.update.server),
        metadata_dir=config.state_path() / METADATA_DIR_NAME,
    )


def check_timing(update: UpdateConfig) -> CheckTiming:
    """When to check: the interval with its jitter, and the backoff after failures (a
    backoff_max below backoff_initial means no growth, not a shorter delay)."""
    return CheckTiming(
        interval=update.interval_seconds,
        jitter=update.jitter,
        backoff_initial=update.backoff_initial_seconds,
        backoff_max=max(update.backoff_max_seconds, update.backoff_initial_seconds),
    )
