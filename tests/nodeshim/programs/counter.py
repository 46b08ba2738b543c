"""A node stand-in for the shim tests: numbered lines on stdout (and every tenth on
stderr), one every INTERVAL seconds, COUNT of them (0: until stopped), then exit CODE.
SIGTERM: says "stopping" on stdout and exits 0, as a node's graceful stop.

Usage: counter.py COUNT INTERVAL CODE
"""

import signal
import sys
import time


def main() -> int:
    count, interval, code = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])

    def stop(*_: object) -> None:
        sys.stdout.write("stopping\n")
        sys.stdout.flush()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    n = 0
    while count == 0 or n < count:
        sys.stdout.write(f"line {n}\n")
        if n % 10 == 0:
            sys.stderr.write(f"err {n}\n")
        sys.stdout.flush()
        sys.stderr.flush()
        n += 1
        if interval:
            time.sleep(interval)
    return code


if __name__ == "__main__":
    sys.exit(main())
