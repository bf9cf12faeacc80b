"""Shared fixtures: the images every QEMU test boots, and guests built from them."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.build import gcov, images
from harness.build.images import Images
from harness.core.lock import locked
from harness.core.paths import cache_dir
from harness.core.rundir import RunDir
from harness.pipeline.boot import Boots
from harness.target.base import Target
from harness.target.labgrid import Lab
from harness.target.machine import process_name
from harness.target.options import TargetOptions
from harness.target.protocol import CommandProtocol
from harness.target.qemu import QemuTarget

# Every QEMU this test process starts (also through `mkh` subprocesses, which
# inherit the environment) carries a process name of its own, so it can tell
# its own QEMUs from anybody else's, pytest-xdist's other workers included
# (they inherit the run's name and add their id; at most 15 characters).
WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if WORKER is None:
    os.environ["MKH_TEST_RUN"] = f"mkh-{secrets.token_hex(3)}"
RUN = os.environ["MKH_TEST_RUN"]
os.environ["MKH_QEMU_NAME"] = f"{RUN}-{WORKER}" if WORKER else RUN
MKH = [sys.executable, "-m", "harness.cli"]
# How tests drive the host's commands (`make test-qemu TRANSPORT=ssh`); mkh
# subprocesses read the same variable.
TRANSPORT = os.environ.get("MKH_TRANSPORT", "console")


def qemu_processes() -> list[str]:
    """This test run's QEMU processes that are still alive."""
    found = subprocess.run(
        ["pgrep", "-a", "-x", process_name()], capture_output=True, text=True, check=False
    )
    return found.stdout.splitlines()


def clocksource_settled(shell: CommandProtocol) -> None:
    """Wait until the kernel has left the tsc-early clocksource (up to 30 s).

    About a second after boot a kernel switches to the refined TSC with
    stop_machine(), and logs it.  A test that stops a CPU (a lockup) or
    stops reading the kernel log (whose QEMU socket then fills within a few
    hundred bytes and stalls QEMU) must start after that, or the whole guest
    hangs instead of what the test stops.
    """
    current = "/sys/devices/system/clocksource/clocksource0/current_clocksource"
    shell.check(
        f"i=0; while [ $(cat {current}) = tsc-early ] && [ $i -lt 300 ]; "
        "do sleep 0.1; i=$((i + 1)); done"
    )


def stock_tree() -> Path:
    """A stock Debian 6.12 tree (no series) kept in the cache, made by `mkh kernel-tree`.

    Kept, so later runs rebuild it incrementally.
    """
    tree = cache_dir("stock") / "linux"
    with locked(tree, "the stock kernel tree"):
        if not (tree / "Makefile").exists():
            made = subprocess.run(
                [*MKH, "kernel-tree", "--no-series", str(tree)],
                capture_output=True,
                text=True,
                check=False,
            )
            assert made.returncode == 0, made.stderr
    return tree


def apic_ids(shell: CommandProtocol) -> list[int]:
    """The APIC ids of the CPUs the kernel behind `shell` runs on."""
    text = shell.check("cat /proc/cpuinfo")
    return [int(x) for x in re.findall(r"^apicid\s*:\s*(\d+)", text, re.M)]


# What the coverage build's kernel needs over the plain one: its gcov counters
# add 2 MiB of .bss (measured 2026-12-07), with room to spare.
GCOV_MEMORY = 4 << 20


def gcov_counters(images: Images) -> int:
    """Bytes more memory a coverage kernel needs than the plain build (0 for others)."""
    return GCOV_MEMORY if gcov.profiled(images.config) else 0


def kasan_shadow(images: Images, memory: int) -> int:
    """Bytes of `memory` a KASAN kernel (the debug build) keeps for its shadow."""
    config = images.config.read_text() if images.config else ""
    return memory // 8 if "CONFIG_KASAN=y" in config else 0


@pytest.fixture(scope="session")
def guest_images() -> Images:
    """The images under test (`make build` has built them, so this reuses them)."""
    return images.resolve(images.kernel_choice())


_FAILURE = pytest.StashKey[BaseException | None]()


def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> None:
    """Keep what the test body raised (None if it passed) for the boot fixture's result.json."""
    if call.when == "call":
        item.stash[_FAILURE] = call.excinfo.value if call.excinfo else None


def lab_environment(config: pytest.Config) -> Path | None:
    """The labgrid environment of a lab run, else None.

    Only `--lg-env FILE` on the command line makes a lab run (`make
    test-hw` gives it): labgrid also reads $LG_ENV, which a lab user may
    have exported for other work.
    """
    given = any(arg.split("=")[0] == "--lg-env" for arg in config.invocation_params.args)
    value = config.getoption("lg_env", None) if given else None
    return Path(value) if value else None


def pytest_configure(config: pytest.Config) -> None:
    if lab_environment(config) is not None and getattr(config.option, "numprocesses", None):
        raise pytest.UsageError("a lab run drives one machine: run it without -n (make test-hw)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On a lab run, tests that need QEMU itself are skipped, saying why."""
    if lab_environment(config) is None:
        return
    own_qemu = "on a lab machine: this test starts its own QEMU, not through the boot fixture"
    for item in items:
        marker = item.get_closest_marker("qemu_guest")
        if marker is not None:
            item.add_marker(pytest.mark.skip(reason=f"on a lab machine: {marker.args[0]}"))
        elif item.get_closest_marker("qemu") and "boot" not in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.skip(reason=own_qemu))


def qemu_only(target: Target) -> QemuTarget:
    """`target` as the QEMU target a test needs; on a lab machine the test is skipped."""
    if not isinstance(target, QemuTarget):
        pytest.skip("on a lab machine: this test needs QEMU's machine (QMP, its consoles)")
    return target


@pytest.fixture(scope="session")
def lab_machine(request: pytest.FixtureRequest) -> Iterator[Lab | None]:
    """The lab machine of a lab run (one labgrid environment for the session), else None."""
    env_file = lab_environment(request.config)
    if env_file is None:
        yield None
        return
    lab = Lab(env_file)
    yield lab
    lab.close()


def _require_cpus(target: Target, options: dict[str, Any]) -> None:
    cpus = int(target.check("nproc --all"))
    wanted = int(options.get("smp", TargetOptions.smp))
    if cpus < wanted:
        pytest.skip(f"on a lab machine: needs {wanted} CPUs, the machine has {cpus}")


@pytest.fixture
def boot(
    guest_images: Images,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    lab_machine: Lab | None,
) -> Iterator[Callable[..., Target]]:
    """A factory: boot(**TargetOptions fields) gives a running target, torn down afterwards.

    Its commands go through $MKH_TRANSPORT (the console unless it says ssh).
    On a lab run (`--lg-env`) it boots the kernel under test on the lab
    machine instead; `smp` then asks for at least that many CPUs there.

    After a test that passed, every kernel's log is flushed and checked once
    more before teardown: a crash printed late still fails the test.  Each
    target's run directory gets a result.json with the test's verdict.
    """
    lab = lab_machine
    boots = Boots(guest_images, images.kernel_choice(), request.node.nodeid, lab)

    def start(**fields: Any) -> Target:
        if lab is not None and boots.targets:
            pytest.skip("on a lab machine: a second machine (a lab run boots one kernel at a time)")
        fields.setdefault("transport", "ssh" if lab is not None else TRANSPORT)
        if lab is not None:
            fields["boot_timeout"] = 0.0  # the lab's own setting
        target = boots.boot(TargetOptions(**fields), RunDir(tmp_path / f"run{len(boots.targets)}"))
        if lab is not None:
            _require_cpus(target, fields)
        return target

    yield start
    failure = request.node.stash.get(_FAILURE, None)
    try:
        # After a pass, a last look at every log, also when QEMU has ended: a late
        # panic must still fail the test.  A skipped test has no verdict to record.
        boots.end(failure, record=not isinstance(failure, pytest.skip.Exception))
    finally:
        for guest in boots.targets:
            guest.run_dir.close()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if any QEMU started by the harness outlived its test.

    An xdist worker checks its own QEMUs before it exits (they die with it) and
    hands what it found to the controller, which fails the run.
    """
    left = qemu_processes()
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput[_WORKER_LEFT] = left
        return
    previous: list[str] = session.config.stash.get(_LEFT, [])
    left += previous
    if left:
        session.config.stash[_LEFT] = left
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_LEFT = pytest.StashKey[list[str]]()
_WORKER_LEFT = "mkh_qemu_left"


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """xdist controller: keep what a finished worker found still running."""
    left = getattr(node, "workeroutput", {}).get(_WORKER_LEFT, [])
    node.config.stash[_LEFT] = node.config.stash.get(_LEFT, []) + left


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    left = terminalreporter.config.stash.get(_LEFT, [])
    if left:
        terminalreporter.write_line("QEMU processes left after the suite:", red=True)
        for line in left:
            terminalreporter.write_line(f"  {line}", red=True)
