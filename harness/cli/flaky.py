"""`mkh flaky`: run chosen tests N times and print how often each passed."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from harness.pipeline.flaky import FlakyRequest, run


def cmd_flaky(args: argparse.Namespace) -> int:
    request = FlakyRequest(tuple(args.tests), args.runs, args.jobs, args.marker, args.basetemp)
    report = run(request)
    print(report.table.read_text(), end="")
    print(f"mkh: table in {report.table}; runs under {report.basetemp}")
    return 0 if report.all_passed else 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    one = sub.add_parser(
        "flaky", help="run tests N times in parallel workers, count passes and failures per test"
    )
    one.add_argument("tests", nargs="+", metavar="TEST", help="a test file, directory or node id")
    one.add_argument("--runs", type=int, default=3, help="repetitions of each test (default 3)")
    one.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="parallel pytest-xdist workers (default: one per core)",
    )
    one.add_argument("-m", dest="marker", metavar="MARKER", help="only tests with this marker")
    one.add_argument(
        "--basetemp",
        type=Path,
        metavar="DIR",
        help="where the runs' directories go (default: results/flaky-* in the cache)",
    )
    one.set_defaults(func=cmd_flaky)
