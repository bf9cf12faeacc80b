"""Shared fixtures: the images every QEMU test boots, and guests built from them."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness import images, result
from harness.artifacts import RunDir
from harness.guest import Guest, GuestOptions, Images
from harness.machine import process_name

# Every QEMU this test run starts (also through `mkh` subprocesses, which
# inherit the environment) carries this process name, so the run can tell its
# own QEMUs from anybody else's.
os.environ["MKH_QEMU_NAME"] = f"mkh-{secrets.token_hex(4)}"
MKH = [sys.executable, "-m", "harness.cli"]


def qemu_processes() -> list[str]:
    """This test run's QEMU processes that are still alive."""
    found = subprocess.run(
        ["pgrep", "-a", "-x", process_name()], capture_output=True, text=True, check=False
    )
    return found.stdout.splitlines()


@pytest.fixture(scope="session")
def guest_images() -> Images:
    """The images under test (`make build` has built them, so this reuses them)."""
    return images.resolve(images.kernel_choice())


_FAILURE = pytest.StashKey[BaseException | None]()


def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> None:
    """Keep what the test body raised (None if it passed) for the boot fixture's result.json."""
    if call.when == "call":
        item.stash[_FAILURE] = call.excinfo.value if call.excinfo else None


@pytest.fixture
def boot(
    guest_images: Images, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Guest]]:
    """A factory: boot(**GuestOptions fields) gives a running guest, torn down afterwards.

    Each guest's run directory gets a result.json with the test's verdict.
    """
    started: list[Guest] = []

    def start(**options: object) -> Guest:
        run = RunDir(tmp_path / f"run{len(started)}")
        guest = Guest(guest_images, GuestOptions(**options), run)  # type: ignore[arg-type]
        started.append(guest)
        return guest.boot()

    yield start
    for guest in started:
        guest.close()
    outcome = result.verdict(request.node.stash.get(_FAILURE, None))
    choice = images.kernel_choice()
    for guest in started:
        result.write(guest.run_dir, outcome, guest_images, choice, request.node.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if any QEMU started by the harness outlived its test."""
    left = qemu_processes()
    if left:
        session.config.stash[_LEFT] = left
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_LEFT = pytest.StashKey[list[str]]()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    left = terminalreporter.config.stash.get(_LEFT, [])
    if left:
        terminalreporter.write_line("QEMU processes left after the suite:", red=True)
        for line in left:
            terminalreporter.write_line(f"  {line}", red=True)
