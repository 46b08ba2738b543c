"""``nodekeeper-launcher`` / ``python -m nodekeeper.launcher``: run the keeper, updatable.

Exit codes: 0 after a stop (SIGTERM, SIGINT, or the Windows service's stop), 2 for bad
flags, an unreadable keeper config, a data directory that is a file or a --python that
does not exist (every keeper start would fail). Everything else is handled inside: a
launcher that runs never exits on its own while the machine needs a keeper.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from nodekeeper import __version__

from .closed_stdout import run_guarded
from .run import Launcher
from .settings import Settings, SettingsError, default_data_dir, from_keeper_config

EXIT_USAGE = 2


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0 (got {text})")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nodekeeper-launcher",
        description="Run the committed keeper version; after a self-update, watch the new "
        "one and fall back to the previous one if it does not come up healthy.",
    )
    p.add_argument("--version", action="version", version=f"nodekeeper-launcher {__version__}")
    p.add_argument("--config", type=Path, metavar="FILE", help="the keeper's config (TOML)")
    p.add_argument(
        "--data-dir", type=Path, help="default: the config's data_dir, else the keeper's default"
    )
    p.add_argument("--python", default=sys.executable, help="interpreter for keeper releases")
    timing = p.add_argument_group("timings (seconds)")
    for flag, default, text in (
        ("--probation-seconds", 60.0, "a new keeper version must answer its status API and "
         "keep running this long to be committed"),
        ("--probe-interval-seconds", 1.0, "how often its status API is asked during probation"),
        ("--backoff-initial-seconds", 1.0, "first wait before restarting a keeper that exited"),
        ("--backoff-max-seconds", 60.0, "the wait doubles per exit up to this"),
        ("--backoff-reset-seconds", 600.0, "a keeper that ran this long starts the doubling "
         "afresh"),
        ("--stop-timeout-seconds", 45.0, "how long a stopping keeper may take before it is "
         "killed"),
    ):  # fmt: skip
        timing.add_argument(
            flag, type=_positive, default=default, metavar="S", help=f"{text} (default %(default)g)"
        )
    p.add_argument(
        "--delegated-cgroup",
        action="store_true",
        help="Linux: this process's cgroup is delegated to it (systemd Delegate=): move into "
        "a leaf of it, so the node's cgroup beside can have the memory and cpu controllers",
    )
    return p


def settings_from_args(args: argparse.Namespace) -> Settings:
    config = args.config.resolve() if args.config is not None else None
    data_dir, (host, port) = from_keeper_config(config)
    settings = Settings(
        config=config,
        data_dir=(args.data_dir or data_dir or default_data_dir()).resolve(),
        status_host=host,
        status_port=port,
        python=args.python,
        probation_seconds=args.probation_seconds,
        probe_interval_seconds=args.probe_interval_seconds,
        backoff_initial_seconds=args.backoff_initial_seconds,
        backoff_max_seconds=args.backoff_max_seconds,
        backoff_reset_seconds=args.backoff_reset_seconds,
        stop_timeout_seconds=args.stop_timeout_seconds,
        delegated_cgroup=getattr(args, "delegated_cgroup", False),
    )
    check_startable(settings)
    return settings


def check_startable(settings: Settings) -> None:
    """Refuse what would make every keeper start fail. The launcher restarts a failing
    keeper forever by design, so these would otherwise be an endless, quiet restart loop."""
    if settings.data_dir.exists() and not settings.data_dir.is_dir():
        raise SettingsError(
            f"data directory {settings.data_dir} is a file; give a directory "
            "(--data-dir, or data_dir in the keeper's config)"
        )
    if shutil.which(settings.python) is None:
        raise SettingsError(
            f"--python {settings.python}: no such interpreter; give the Python that has "
            "nodekeeper installed (default: the one running the launcher)"
        )


def install_stop_signals(launcher: Launcher) -> None:
    """SIGTERM and SIGINT (and SIGBREAK on Windows consoles) stop the launcher. Under the
    Windows service there are no signals: the service's stop handler calls
    ``launcher.request_stop()``."""
    names = ("SIGTERM", "SIGINT", "SIGBREAK")
    for signum in (getattr(signal, n) for n in names if hasattr(signal, n)):
        signal.signal(signum, lambda *_: launcher.request_stop())


def main(argv: Sequence[str] | None = None) -> int:
    return run_guarded(lambda: _main(argv))


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s launcher %(levelname)s %(message)s",
    )
    try:
        settings = settings_from_args(args)
    except SettingsError as exc:
        print(f"nodekeeper-launcher: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    launcher = Launcher(settings)
    install_stop_signals(launcher)
    return launcher.run()
