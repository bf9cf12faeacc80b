"""The suite run by a command (mkh flaky, mkh coverage): its input checked, pytest run.

As `make test` runs it: pytest-xdist workers, each test file on one worker,
JUnit XML and the run directories where the command keeps them.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from harness.core.errors import InfraError
from harness.core.paths import REPO


def check_tests(tests: Sequence[str], jobs: int) -> None:
    """Refuse no tests, a test file that is not there, or fewer than one worker."""
    if jobs < 1:
        raise InfraError("--jobs takes a number of at least 1")
    if not tests:
        raise InfraError("name the tests to run (a file, a directory or a node id)")
    for test in tests:
        path = test.split("::", 1)[0]
        if not (REPO / path).exists():
            raise InfraError(f"{path}: no such test file or directory in {REPO}")


def pytest_argv(
    tests: Sequence[str],
    jobs: int,
    marker: str | None,
    junit: Path,
    basetemp: Path,
    extra: Sequence[str] = (),
) -> list[str]:
    argv = [sys.executable, "-m", "pytest", *extra, "-n", str(jobs), "--dist", "loadfile"]
    argv += [f"--junitxml={junit}", f"--basetemp={basetemp}"]
    if marker:
        argv += ["-m", marker]
    return [*argv, *tests]


def run_pytest(argv: list[str], junit: Path, env: Mapping[str, str] | None = None) -> int:
    """pytest's status (its progress on the terminal): 0 all passed, 1 some failed.

    Anything else means pytest did not run the tests: InfraError.
    """
    status = subprocess.call(argv, cwd=REPO, env=env)
    if status not in (0, 1) or not junit.is_file():
        raise InfraError(f"pytest did not run the tests (exit status {status}); see its output")
    return status
