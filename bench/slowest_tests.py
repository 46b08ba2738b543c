"""Where the test suite's time goes: the slowest tests and the total by folder.

    .venv/bin/python bench/slowest_tests.py [--junit FILE] [--top N]
    .venv/bin/python bench/slowest_tests.py --run [--top N] [-- PYTEST ARGS ...]

It reads the JUnit XML that `make test` leaves in build/test-results.xml (or --junit
FILE), or with --run first runs pytest (with PYTEST ARGS, default the whole suite) writing
one. Each test's time is setup + call + teardown, as pytest reports it; under pytest-xdist
the times add up to more than the wall time, which is printed beside them.

Run without arguments (as `make bench` does) it only reads: it never starts the suite on
its own, because the suite takes minutes and the benches share the machine.
Why a test is slow, and what to do about it, is in tests/README.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_JUNIT = ROOT / "build" / "test-results.xml"


@dataclass(frozen=True)
class Timed:
    nodeid: str  # tests/server/test_api.py::test_x[param]
    seconds: float
    outcome: str  # passed, failed, error, skipped


def module_path(classname: str) -> str:
    """`tests.server.test_api` (or `...test_api.TestClass`) as the file's path: the
    longest dotted prefix that is a file under the project root."""
    parts = classname.split(".")
    for end in range(len(parts), 0, -1):
        candidate = "/".join(parts[:end]) + ".py"
        if (ROOT / candidate).is_file():
            rest = parts[end:]
            return "::".join([candidate, *rest])
    # A file that is gone since the run (moved): the module is the parts up to the first
    # class name (classes start with a capital letter).
    module = [p for p in parts if not p[:1].isupper()]
    return "::".join(["/".join(module) + ".py", *parts[len(module) :]])


def read_junit(path: Path) -> tuple[list[Timed], float]:
    """Every test case in a JUnit XML file, and the suite's wall time."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    wall = sum(float(s.get("time", 0)) for s in suites)
    found = []
    for case in root.iter("testcase"):
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed"}.get(child.tag, child.tag)
        nodeid = f"{module_path(case.get('classname', ''))}::{case.get('name', '')}"
        found.append(Timed(nodeid, float(case.get("time", 0)), outcome))
    return found, wall


def folder_of(nodeid: str) -> str:
    """`tests/server` for tests/server/test_api.py::x; a top-level file stands alone."""
    path = nodeid.split("::", 1)[0]
    parts = path.split("/")
    return "/".join(parts[:2]) if len(parts) > 2 else path


def by_folder(tests: Iterable[Timed]) -> list[tuple[str, float, int]]:
    totals: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for test in tests:
        totals[folder_of(test.nodeid)] += test.seconds
        counts[folder_of(test.nodeid)] += 1
    return sorted(((f, totals[f], counts[f]) for f in totals), key=lambda row: -row[1])


def report(tests: Sequence[Timed], wall: float, top: int) -> str:
    lines = [f"{len(tests)} tests, {sum(t.seconds for t in tests):.1f} s of test time, "
             f"{wall:.1f} s wall (pytest's own figure)"]  # fmt: skip
    lines.append(f"\nslowest {min(top, len(tests))}:")
    for test in sorted(tests, key=lambda t: -t.seconds)[:top]:
        mark = "" if test.outcome == "passed" else f"  ({test.outcome})"
        lines.append(f"{test.seconds:8.2f} s  {test.nodeid}{mark}")
    lines.append("\nby folder (seconds, tests):")
    for folder, seconds, count in by_folder(tests):
        lines.append(f"{seconds:8.1f} s  {count:5d}  {folder}")
    return "\n".join(lines)


def run_pytest(junit: Path, args: Sequence[str]) -> int:
    junit.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pytest", f"--junitxml={junit}", "-q", *args]
    print("running:", " ".join(command), flush=True)
    return subprocess.run(command, cwd=ROOT).returncode


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--junit", type=Path, default=DEFAULT_JUNIT, help="JUnit XML to read")
    parser.add_argument("--top", type=int, default=30, help="how many tests to list")
    parser.add_argument("--run", action="store_true", help="run pytest first (args after --)")
    parser.add_argument("pytest_args", nargs="*", help="with --run: what pytest gets")
    args = parser.parse_args(argv)
    if args.run:
        run_pytest(args.junit, args.pytest_args or ["tests"])  # failures still have times
    elif not args.junit.is_file():
        print(f"no {args.junit}: run `make test` first, or pass --run or --junit FILE")
        return 0
    tests, wall = read_junit(args.junit)
    print(report(tests, wall, args.top))
    return 0


if __name__ == "__main__":
    from nodekeeper.launcher.closed_stdout import run_guarded  # `... | head` ends quietly

    sys.exit(run_guarded(main))
