"""Ignores SIGTERM and starts a child, which starts a grandchild; all three ignore SIGTERM.

Usage: stubborn_tree.py PIDFILE   (each process appends its pid to PIDFILE)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time


def main() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    pidfile, depth = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0
    if depth < 2:
        subprocess.Popen([sys.executable, __file__, pidfile, str(depth + 1)])
    with open(pidfile, "a") as fh:
        fh.write(f"{os.getpid()}\n")
    print(f"level {depth} running", flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
