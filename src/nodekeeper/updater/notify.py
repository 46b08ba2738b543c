"""Say a problem once: the keeper log, the error index and, when the control plane counts
it, a report, from one call.

Every updater failure goes to three audiences: the operator reading the keeper log, the
operator's tools reading the error index (structured fields), and the control plane that
counts failures per release. Writing the three calls at each place made them drift (one
place forgot the index, another logged twice); ``Notifier.problem`` is the one way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from .interfaces import ErrorSink, Reports

# Reported when nothing knows the version (nothing installed yet): a valid SemVer that
# no release uses.
NO_VERSION = "0.0.0"


class Notifier:
    """The log, index and report of one process's updater (the node's or the keeper's)."""

    def __init__(
        self,
        process: str,
        *,
        log: logging.Logger,
        errors: ErrorSink | None = None,
        reports: Reports | None = None,
        clock: Callable[[], float] = time.time,
        source: str = "updater",
    ) -> None:
        self.process = process
        self.log = log
        self.errors = errors
        self.reports = reports
        self.clock = clock
        self.source = source
        # The last problem, for the status API: what went wrong and when.
        self.last_error: dict[str, Any] | None = None

    def problem(
        self,
        kind: str,
        message: str,
        *,
        report_kind: str | None = None,
        version: str | None = None,
        target: str | None = None,
        logged: bool = False,
        index: dict[str, Any] | None = None,
        **details: Any,
    ) -> None:
        """Log ``message`` (WARNING, so the log handler does not index it a second time;
        skipped when the caller ``logged`` it already), index it with ``reason=kind`` and
        the ``index`` fields (default: version and target), and report it as
        ``report_kind`` when given. A broken index never hides the report."""
        if not logged:
            self.log.warning(message)
        self.last_error = {"kind": kind, "message": message, "at": self.clock()}
        if self.errors is not None:
            fields = index if index is not None else {"version": version, "target_version": target}
            try:
                self.errors.record(self.source, logging.ERROR, message, reason=kind, **fields)
            except Exception:
                self.log.exception("cannot write the error index")
        if report_kind is not None:
            self.report(report_kind, message, version=version, target=target, **details)

    def report(
        self, kind: str, message: str, *, version: str | None, target: str | None, **details: Any
    ) -> None:
        """A report only (an outcome the control plane counts, not a problem)."""
        if self.reports is None:
            return
        self.reports.report(
            kind,
            message,
            process=self.process,
            version=version or NO_VERSION,
            target_version=target,
            **{k: v for k, v in details.items() if v is not None},
        )
