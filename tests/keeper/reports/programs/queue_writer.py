"""Queues reports as fast as it can until killed; prints each number once its put()
returned (the moment the caller may count on it).

Usage: queue_writer.py DIR MAX_COUNT
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from nodekeeper.keeper.reports.queue import QueueLimits, ReportQueue
from nodekeeper.keeper.reports.record import make_record
from nodekeeper.version.reports import new_report_id


def main() -> None:
    directory, max_count = Path(sys.argv[1]), int(sys.argv[2])
    queue = ReportQueue(directory, QueueLimits(max_count=max_count, max_bytes=1 << 20))
    n = 0
    while True:
        kind = "hang" if n % 4 == 0 else "update_succeeded"
        record = make_record(
            kind,
            f"report {n}",
            process="storagenode",
            version="1.0.0",
            target_version=None,
            at=time.time(),
            report_id=new_report_id(),
            node_id=None,
            details={"n": n, "pad": "x" * (n % 7) * 100},
        )
        queue.put(record)
        print(n, flush=True)
        n += 1


if __name__ == "__main__":
    main()
