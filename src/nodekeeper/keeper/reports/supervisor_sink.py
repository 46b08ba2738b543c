"""The supervisor's events as reports: an ``ErrorSink`` that also tells the control plane.

``Supervisor(errors=...)`` records its events through ``ErrorSink.record(source, level,
message, reason=..., **fields)`` (``keeper/supervisor.py``). This sink passes every record
on to the error index unchanged and turns the events the control plane counts into
reports; the supervisor needs no change and no knowledge of reports.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from nodekeeper.updater.interfaces import ErrorSink, Reports
from nodekeeper.version.reports import ReportKind

log = logging.getLogger("nodekeeper.keeper.reports")

# The supervisor's ``reason`` field → report kind. A single crash or a failed start is
# not reported (the node restarts and usually recovers; five of them make a crash loop,
# which is); "needs-setup" is the operator's to fix at the machine, not the network's.
REASON_KINDS: dict[str, ReportKind] = {
    "crash-loop": "crash_loop",
    "hung": "hang",
    "memory": "limit_hit",
    # A node that ignores its graceful stop loses in-flight work on every update; the
    # network wants to know which versions do that.
    "stop-timeout": "stop_timeout",
}
# Reported when nothing knows the node's version yet (it never answered a pulse and the
# updater has not installed one): a valid SemVer that no release uses.
UNKNOWN_VERSION = "0.0.0"


class ReportingErrorSink:
    def __init__(
        self,
        reporter: Reports,
        *,
        version: Callable[[], str | None],
        index: ErrorSink | None = None,
        process: str = "storagenode",
    ) -> None:
        self.reporter = reporter
        self.version = version
        self.index = index
        self.process = process

    def record(self, source: str, level: int, message: str, **fields: Any) -> Any:
        kind = REASON_KINDS.get(str(fields.get("reason")))
        if kind is not None:
            self._report(kind, message, fields)
        # The error index is the supervisor's own business: its errors reach the
        # supervisor as before (it logs them), after the report is safely queued.
        return self.index.record(source, level, message, **fields) if self.index else None

    def _report(self, kind: ReportKind, message: str, fields: dict[str, Any]) -> None:
        try:
            version = self.version()
        except Exception:
            log.exception("cannot tell the node's version for a %s report", kind)
            version = None
        details = dict(fields)
        if not version:
            version = UNKNOWN_VERSION
            details["version_unknown"] = True
        self.reporter.report(kind, message, process=self.process, version=version, **details)
