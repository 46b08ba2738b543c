"""Reports to the control plane: a durable bounded queue and the sender that drains it.

Modules, one job each: ``policy`` (pure decisions), ``record`` (a queued report and the
signed report it becomes), ``durable`` (whole-or-absent file writes), ``queue`` (the
on-disk queue), ``outbox`` (disk queue plus memory when the disk fails), ``sender`` (one
POST), ``reporter`` (the API and the send loop), ``supervisor_sink`` (supervisor events
as reports).
"""

from nodekeeper.keeper.reports.queue import QueueLimits
from nodekeeper.keeper.reports.reporter import Reporter, ReporterSettings
from nodekeeper.keeper.reports.supervisor_sink import ReportingErrorSink

__all__ = ["QueueLimits", "Reporter", "ReporterSettings", "ReportingErrorSink"]
