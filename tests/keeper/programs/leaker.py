"""Leaks memory steadily: MIB_PER_STEP MiB every STEP seconds, touched so it is resident.
Exits 0 on SIGTERM (a graceful stop). Usage: leaker.py MIB_PER_STEP STEP [EVENTS]
"""

from __future__ import annotations

import os
import signal
import sys
import time

hoard: list[bytearray] = []


def main() -> None:
    mib, step = int(sys.argv[1]), float(sys.argv[2])
    events = sys.argv[3] if len(sys.argv) > 3 else None

    def on_term(signum: int, frame: object) -> None:
        if events:
            with open(events, "a") as fh:
                fh.write(f"graceful {os.getpid()} {len(hoard) * mib}\n")
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_term)
    while True:
        try:
            hoard.append(bytearray(b"x" * (mib * 1024 * 1024)))
        except MemoryError:
            if events:
                with open(events, "a") as fh:
                    fh.write(f"memoryerror {os.getpid()} {len(hoard) * mib}\n")
            os._exit(3)
        time.sleep(step)


if __name__ == "__main__":
    main()
