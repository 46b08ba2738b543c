"""The keeper's side of self-update: hand over to a new keeper version via the launcher.

The update machine treats process ``nodekeeper`` like the node up to preflight (download,
verify, unpack into ``versions/nodekeeper/<version>``, run its ``version``). Then, instead
of switching through the supervisor, it calls :func:`hand_over`: the request is written
for the launcher, the keeper stops (its node with it) and exits with
``EXIT_SELF_UPDATE``; the launcher starts the new version on probation and commits it or
falls back (``nodekeeper.launcher``). Whatever the launcher concluded comes back as
outcome records in its state file, which the next keeper turns into reports and
error-index entries (:func:`deliver_outcomes`).

Also for the update machine: :func:`failed_versions` (never hand over to those again;
the launcher refuses them anyway) and :func:`protected_versions` (retention must not
delete them: the launcher may start any of them).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nodekeeper.launcher import statefile
from nodekeeper.launcher.decide import Outcome, State
from nodekeeper.launcher.manifest import UnusableInstall, keeper_argv
from nodekeeper.launcher.protocol import (
    ENV_RUNNING,
    ENV_STATE_DIR,
    ENV_VERSIONS_DIR,
    EXIT_SELF_UPDATE,
    PROCESS,
)
from nodekeeper.version.versions import normalize_version

log = logging.getLogger("nodekeeper.selfupdate")

__all__ = [
    "EXIT_SELF_UPDATE",
    "PROCESS",
    "LauncherLink",
    "SelfUpdateError",
    "deliver_outcomes",
    "exit_code",
    "failed_versions",
    "hand_over",
    "launcher_link",
    "protected_versions",
]

# Set by hand_over(); read by exit_code() when the keeper's main returns. Process-wide on
# purpose: one keeper process hands over at most once, then exits.
_handed_over: str | None = None


class SelfUpdateError(Exception):
    """The keeper cannot hand over (the message says why); it keeps running."""

    kind = "update_failed"


@dataclass(frozen=True)
class LauncherLink:
    """Where the launcher that started this keeper keeps its files."""

    state_dir: Path
    versions_dir: Path
    running: str | None  # the version this keeper was started as; None = the runtime's

    def state(self) -> State:
        try:
            return statefile.load_state(self.state_dir)
        except (statefile.StateFileError, OSError):
            return State()


def launcher_link(environ: Mapping[str, str] = os.environ) -> LauncherLink | None:
    """The launcher this keeper runs under, None when it was started some other way
    (by hand, by an older unit file): such a keeper must not exit to update itself."""
    state_dir = environ.get(ENV_STATE_DIR)
    versions_dir = environ.get(ENV_VERSIONS_DIR)
    if not state_dir or not versions_dir:
        return None
    return LauncherLink(Path(state_dir), Path(versions_dir), environ.get(ENV_RUNNING) or None)


def failed_versions(link: LauncherLink | None) -> frozenset[str]:
    return frozenset(link.state().failed) if link is not None else frozenset()


def protected_versions(link: LauncherLink | None) -> frozenset[str]:
    """Keeper versions retention must keep: current, previous, pending, and the one
    running now."""
    if link is None:
        return frozenset()
    state = link.state()
    pending = state.pending.version if state.pending is not None else None
    return frozenset(v for v in (state.current, state.previous, pending, link.running) if v)


def hand_over(
    install_dir: Path,
    version: str,
    *,
    shutdown: Callable[[], None],
    link: LauncherLink | None = None,
) -> None:
    """Hand over to keeper ``version``, installed and preflighted in ``install_dir``.

    Checks everything the launcher will check, so a refusal happens here, while this
    keeper still runs, rather than after it stopped the node: a launcher to hand over to,
    the install at the launcher's ``versions/nodekeeper/<version>`` with a manifest that
    starts it, and a version that has not failed before. Then writes the request
    (atomically), marks this process for ``EXIT_SELF_UPDATE`` and calls ``shutdown``
    (``Supervisor.request_shutdown``: stop the node gracefully, then return). Raises
    SelfUpdateError without side effects when it cannot.
    """
    global _handed_over
    link = link if link is not None else launcher_link()
    if link is None:
        raise SelfUpdateError(
            "this keeper was not started by nodekeeper-launcher, so it cannot update "
            "itself; run it through the launcher (the installed service does)"
        )
    version = normalize_version(version)
    expected = link.versions_dir / version
    if Path(install_dir).resolve() != expected.resolve():
        raise SelfUpdateError(
            f"keeper {version} must be installed in {expected}, not {install_dir}"
        )
    try:
        keeper_argv(expected, version, sys.executable, [])
    except UnusableInstall as exc:
        raise SelfUpdateError(f"keeper {version} cannot be started: {exc}") from None
    state = link.state()
    if version in state.failed:
        raise SelfUpdateError(f"keeper {version} failed before; waiting for a newer one")
    if version == (state.current or link.running):
        raise SelfUpdateError(f"keeper {version} is the version running already")
    try:
        statefile.write_request(link.state_dir, version, time.time())
    except OSError as exc:
        raise SelfUpdateError(f"cannot write the request in {link.state_dir}: {exc}") from None
    _handed_over = version
    log.info("handing over to keeper %s: stopping (the launcher starts the new version)", version)
    shutdown()


def handed_over() -> str | None:
    """The version this process is handing over to, if :func:`hand_over` was called."""
    return _handed_over


def handing_back(link: LauncherLink | None = None) -> bool:
    """Whether the launcher is stopping this keeper as a hand-back (it failed its
    probation): then the node stays for the keeper the launcher falls back to."""
    link = link if link is not None else launcher_link()
    return link is not None and statefile.read_handback(link.state_dir) == os.getpid()


def exit_code(keeper_code: int) -> int:
    """The exit code for the process: EXIT_SELF_UPDATE after a hand-over the keeper
    completed cleanly (it stopped its node), else the keeper's own."""
    if _handed_over is not None and keeper_code == 0:
        return EXIT_SELF_UPDATE
    return keeper_code


# -- outcomes -> reports -----------------------------------------------------------------

ReportFn = Callable[..., Any]  # Reporter.report(kind, message, *, process, version, ...)
RecordErrorFn = Callable[..., Any]  # ErrorIndex.record(source, level, message, **fields)

REPORT_KIND = {
    "committed": "update_succeeded",
    "rolled_back": "rolled_back",
    "refused": "update_failed",
}


def outcome_message(o: Outcome) -> str:
    running = o.running or "the runtime's keeper"
    if o.kind == "committed":
        return f"keeper updated itself to {o.version}"
    if o.kind == "refused":
        return f"keeper self-update to {o.version} refused: {o.detail}"
    return f"keeper {o.version} rolled back to {running} ({o.reason}): {o.detail}"


def undelivered(link: LauncherLink) -> list[Outcome]:
    done = statefile.read_delivered(link.state_dir)
    return [o for o in link.state().outcomes if o.id not in done]


def deliver_outcomes(
    link: LauncherLink | None,
    *,
    running_version: str,
    report: ReportFn | None,
    record_error: RecordErrorFn | None,
) -> list[Outcome]:
    """Turn the launcher's new outcome records into reports (and failures into
    error-index entries), then mark them delivered. At least once: a keeper killed in
    between reports them again, and report ids make the control plane count each once
    per send, which is the lesser harm than losing a rollback."""
    if link is None:
        return []
    todo = undelivered(link)
    for o in todo:
        message = outcome_message(o)
        details = {"reason": o.reason, "detail": o.detail, "outcome_id": o.id}
        if report is not None:
            report(
                REPORT_KIND[o.kind],
                message,
                process=PROCESS,
                version=running_version,
                target_version=o.version,
                at=o.at,
                **details,
            )
        if record_error is not None and o.kind != "committed":
            record_error(
                "keeper",
                logging.ERROR,
                message,
                timestamp=o.at,
                process=PROCESS,
                target_version=o.version,
                **details,
            )
        (log.info if o.kind == "committed" else log.error)("%s", message)
    if todo:
        ids = statefile.read_delivered(link.state_dir) | {o.id for o in todo}
        # Only ids still in the state matter; the rest were pruned by the launcher.
        ids &= {o.id for o in link.state().outcomes}
        statefile.write_delivered(link.state_dir, frozenset(ids))
    return todo
