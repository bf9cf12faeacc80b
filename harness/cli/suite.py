"""`mkh flaky` and `mkh bisect`: the suite as a kernel developer's tool."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from harness.cli import args as common
from harness.pipeline import bisect
from harness.pipeline.flaky import FlakyRequest, run


def cmd_flaky(args: argparse.Namespace) -> int:
    request = FlakyRequest(tuple(args.tests), args.runs, args.jobs, args.marker, args.basetemp)
    report = run(request)
    print(report.table.read_text(), end="")
    print(f"mkh: table in {report.table}; runs under {report.basetemp}")
    return 0 if report.all_passed else 1


def cmd_bisect(args: argparse.Namespace) -> int:
    test = " ".join(args.test) or None
    script = args.script.resolve() if args.script else None
    request = bisect.BisectRequest(args.tree.resolve(), args.good, args.bad, test, script)
    report = bisect.run(request)
    if report.first_bad is None:
        print("first bad commit: one of (skipped commits left it open):")
        for commit in report.candidates:
            print(f"  {commit}")
    else:
        print(f"first bad commit: {report.first_bad} {report.subject}")
        print(f"its run directory: {report.run_dir}")
    print(f"mkh: every step under {report.out}")
    return 0


def cmd_bisect_step(args: argparse.Namespace) -> int:
    return bisect.step(args.tree, args.out, args.test, args.script)


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

    one = sub.add_parser(
        "bisect", help="the first commit of a kernel tree where a test fails (git bisect run)"
    )
    one.add_argument("--tree", type=Path, required=True, help="the kernel tree (under git)")
    one.add_argument("--good", required=True, metavar="REV", help="a commit where the test passes")
    one.add_argument("--bad", required=True, metavar="REV", help="a commit where it fails")
    one.add_argument(
        "--script", type=common.existing_file, metavar="FILE", help="a guest shell script as test"
    )
    one.add_argument("test", nargs="*", help="after --: a pytest node id of the suite")
    one.set_defaults(func=cmd_bisect)

    # What git bisect run runs at each commit (not for users: mkh bisect passes it).
    step = sub.add_parser("_bisect-step")
    step.add_argument("--tree", type=Path, required=True)
    step.add_argument("--out", type=Path, required=True)
    step.add_argument("--test")
    step.add_argument("--script", type=Path)
    step.set_defaults(func=cmd_bisect_step)
