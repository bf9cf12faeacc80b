"""`mkh flaky`, `mkh bisect` and `mkh coverage`: the suite as a kernel developer's tool."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from harness.cli import args as common
from harness.core.errors import InfraError
from harness.pipeline import bisect, coverage
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


def cmd_coverage(args: argparse.Namespace) -> int:
    tree = args.kernel_tree.resolve() if args.kernel_tree else None
    if args.source is not None:
        if args.tests or args.jobs or args.marker or args.basetemp:
            raise InfraError("--from reports runs made already: no TEST, --jobs, -m or --basetemp")
        report = coverage.report_saved(args.source.resolve(), tree)
    else:
        request = coverage.CoverageRequest(
            tuple(args.tests or [coverage.DEFAULT_TESTS]),
            args.jobs or os.cpu_count() or 1,
            args.marker or coverage.DEFAULT_MARKER,
            tree,
            args.basetemp,
        )
        report = coverage.run(request)
    print(report.summary.read_text(), end="")
    print(f"mkh: HTML report {report.html}; summary {report.summary}")
    return 0 if report.pytest_status == 0 else 1


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

    one = sub.add_parser(
        "coverage",
        help="the suite on the coverage kernel: lines and functions of the series it reaches",
    )
    one.add_argument(
        "tests",
        nargs="*",
        metavar="TEST",
        help=f"test files, directories or node ids (default {coverage.DEFAULT_TESTS})",
    )
    one.add_argument(
        "--jobs", type=int, help="parallel pytest-xdist workers (default: one per core)"
    )
    one.add_argument(
        "-m",
        dest="marker",
        metavar="MARKER",
        help=f"a pytest marker expression (default {coverage.DEFAULT_MARKER!r})",
    )
    one.add_argument(
        "--kernel-tree",
        type=Path,
        metavar="PATH",
        help="a kernel tree of the series to measure (default: Debian's source + the series)",
    )
    one.add_argument(
        "--basetemp",
        type=Path,
        metavar="DIR",
        help="where the runs' directories go (default: results/coverage-* in the cache)",
    )
    one.add_argument(
        "--from",
        dest="source",
        type=Path,
        metavar="DIR",
        help="run no tests; report the gcov counts saved by runs under DIR "
        "(runs made with MKH_COVERAGE_KERNEL=1)",
    )
    one.set_defaults(func=cmd_coverage)

    # What git bisect run runs at each commit (not for users: mkh bisect passes it).
    step = sub.add_parser("_bisect-step")
    step.add_argument("--tree", type=Path, required=True)
    step.add_argument("--out", type=Path, required=True)
    step.add_argument("--test")
    step.add_argument("--script", type=Path)
    step.set_defaults(func=cmd_bisect_step)
