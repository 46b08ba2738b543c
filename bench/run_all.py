"""Runs every benchmark in bench/ one after the other, with its default settings.

    .venv/bin/python bench/run_all.py [NAME ...]

Each bench prints its own figures beside the baseline it measured in the same run.
They run one at a time: they share two cores, and running them together would measure
each other.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    wanted = set(sys.argv[1:])
    scripts = sorted(p for p in HERE.glob("*.py") if p.name != "run_all.py")
    failed = []
    for script in scripts:
        if wanted and script.stem not in wanted:
            continue
        print(f"\n=== {script.name} " + "=" * max(0, 60 - len(script.name)), flush=True)
        if subprocess.run([sys.executable, str(script)]).returncode != 0:
            failed.append(script.name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
