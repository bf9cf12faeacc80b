"""`mkh flaky` from its request: the chosen tests run N times in parallel workers, then tallied.

pytest runs them with pytest-repeat (`--count N`) under pytest-xdist, each
test file on one worker as `make test` has them, its tests repeated in a row.
Its JUnit XML and the run directories' result.json then give the table
(harness/report/flaky.py), written next to them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from harness.core.errors import InfraError
from harness.core.paths import cache_dir
from harness.pipeline import suite
from harness.report import flaky
from harness.report.flaky import Tally


@dataclass(frozen=True)
class FlakyRequest:
    """Which tests, how many times each, on how many workers."""

    tests: tuple[str, ...]  # pytest node ids or paths, relative to the repository
    runs: int
    jobs: int
    marker: str | None = None  # pytest -m
    basetemp: Path | None = None  # where the runs go; None: a new directory in the cache


@dataclass(frozen=True)
class FlakyReport:
    tallies: list[Tally]
    table: Path  # the table as text
    basetemp: Path  # every run's directory is under it
    pytest_status: int

    @property
    def all_passed(self) -> bool:
        return all(t.failed == 0 for t in self.tallies)


def check(request: FlakyRequest) -> None:
    """Bad input is refused before anything runs."""
    if request.runs < 1:
        raise InfraError("--runs takes a number of at least 1")
    suite.check_tests(request.tests, request.jobs)


def pytest_argv(request: FlakyRequest, junit: Path, basetemp: Path) -> list[str]:
    # Each test file on one worker, its repetitions in a row.
    repeat = ["--count", str(request.runs)]
    return suite.pytest_argv(
        request.tests, request.jobs, request.marker, junit, basetemp, extra=repeat
    )


def run(request: FlakyRequest) -> FlakyReport:
    """Run the repetitions (pytest's own progress on the terminal) and tally them."""
    check(request)
    out = cache_dir("results", f"flaky-{time.strftime('%Y%m%d-%H%M%S')}")
    basetemp = request.basetemp or out / "runs"
    junit = out / "junit.xml"
    status = suite.run_pytest(pytest_argv(request, junit, basetemp), junit)
    tallies = flaky.tally(flaky.outcomes(junit.read_text()), flaky.failed_runs(basetemp))
    table = out / "flaky.txt"
    table.write_text(flaky.table(tallies))
    (out / "flaky.json").write_text(flaky.to_json(tallies))
    return FlakyReport(tallies, table, basetemp, status)
