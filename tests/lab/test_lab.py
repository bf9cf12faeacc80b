"""The lab path end to end, against the stand-in reached through a labgrid remote place."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import pytest

from harness.build.images import Images
from harness.core.errors import GuestTimeout, KernelCrash
from harness.core.paths import REPO
from harness.core.rundir import RunDir
from harness.multikernel import dtb
from harness.multikernel.mk import Multikernel
from harness.target.lab import LabTarget
from harness.target.labgrid import Lab
from tests.conftest import MKH
from tests.lab.conftest import LocalLab

pytestmark = pytest.mark.qemu
WEB = dtb.Instance("web-server", 1, (1,), 0x8000000)


@pytest.fixture
def lab(local_lab: LocalLab) -> Iterator[Lab]:
    opened = Lab(local_lab.env_file)
    yield opened
    opened.close()


def timings(run: Path) -> dict[str, float]:
    return dict(json.loads((run / "timings.json").read_text()))


def boot(images: Images, lab: Lab, where: Path, append: str = "") -> LabTarget:
    return LabTarget(images, lab, RunDir(where), append=append).boot()


def test_the_kernel_under_test_is_kexeced_from_the_machines_own_os(
    guest_images: Images, lab: Lab, tmp_path: Path
) -> None:
    guest = boot(guest_images, lab, tmp_path / "run")
    try:
        cmdline = guest.check("cat /proc/cmdline")
        assert "mkkernel_pool=256M" in cmdline and "mkh.ssh=1" in cmdline
        assert guest.check("test -d /sys/fs/multikernel/instances && echo yes") == "yes\n"
        ran = guest.run("echo out; echo err >&2; exit 4")
        assert (ran.stdout, ran.stderr, ran.status) == ("out\n", "err\n", 4)
        guest.finish()
    finally:
        guest.close()
    console = (tmp_path / "run" / "console-serial.log").read_text()
    # The console, read from before the kexec: the old kernel's last word,
    # then the kernel under test's boot up to the mkh init.
    kexec = console.index("kexec_core: Starting new kernel")
    assert kexec < console.index("Linux version", kexec) < console.index("mkh-guest: ready", kexec)
    assert "kexec" in timings(tmp_path / "run")


def test_multikernel_through_the_lab_target(guest_images: Images, lab: Lab, tmp_path: Path) -> None:
    guest = boot(guest_images, lab, tmp_path / "run")
    # Whatever ran (its own OS, or an earlier run's kernel) was reached without a power cycle.
    assert "power-cycled" not in timings(tmp_path / "run")
    try:
        mk = Multikernel(guest, guest.instances)
        assert mk.upload(dtb.to_dtb([WEB])).ok
        assert mk.status("web-server") == "ready"
        assert mk.load(WEB.id, cmdline="mkh-lab").ok
        assert [(k.mk_id, k.cmdline) for k in mk.kimages()] == [(1, "mkh-lab")]
        assert mk.unload(WEB.id).ok
        assert mk.kimages() == []
        guest.finish()
    finally:
        guest.close()


def test_an_instance_on_the_lab_machine_is_reached_through_its_host(
    guest_images: Images, lab: Lab, tmp_path: Path
) -> None:
    guest = boot(guest_images, lab, tmp_path / "run")
    try:
        mk = Multikernel(guest, guest.instances)
        # A lab machine has no UART to spare: the instance gets its console over shared memory.
        shell = mk.spawn(WEB)
        assert shell.console.name == "mkcon1"
        assert shell.check("cat /proc/consoles").startswith("mkcon0 ")
        assert shell.check("echo $((6 * 7))-from-the-instance") == "42-from-the-instance\n"
        assert mk.halt(WEB.id).ok
        guest.finish()
    finally:
        guest.close()
    log = (tmp_path / "run" / "console-mkcon1.log").read_text()
    assert log.startswith("[    0.000000] Linux version") and "42-from-the-instance" in log


@pytest.mark.parametrize(
    ("append", "error", "boot_timeout"),
    [
        # The kernel panics: no init where init= says.
        ("rdinit=/mkh-none init=/mkh-none", KernelCrash, None),
        # The kernel runs, but the mkh init never does (busybox's /sbin/init waits).
        ("rdinit=/mkh-none", GuestTimeout, 30.0),
    ],
)
def test_a_kernel_that_never_comes_up_is_reported_and_power_cycled_away(
    guest_images: Images,
    lab: Lab,
    tmp_path: Path,
    append: str,
    error: type[Exception],
    boot_timeout: float | None,
) -> None:
    broken = LabTarget(
        guest_images, lab, RunDir(tmp_path / "broken"), append, boot_timeout=boot_timeout
    )
    with pytest.raises(error):
        broken.boot()
    broken.close()
    assert broken.recovered
    assert "power-cycled" in timings(tmp_path / "broken")
    # The machine is usable again: the next run boots the kernel under test.
    guest = boot(guest_images, lab, tmp_path / "next")
    try:
        assert "mkkernel_pool=256M" in guest.check("cat /proc/cmdline")
        # From the machine's own OS: the power cycle brought it back.
        assert "power-cycled" not in timings(tmp_path / "next")
    finally:
        guest.close()


def mkh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MKH, *args], capture_output=True, text=True, timeout=900, check=False)


def test_mkh_run_on_the_lab_machine(local_lab: LocalLab, tmp_path: Path) -> None:
    art = tmp_path / "art"
    done = mkh(
        "run",
        "--lg-env",
        str(local_lab.env_file),
        "--artifacts",
        str(art),
        "--",
        "echo out; echo err >&2; test -d /sys/fs/multikernel && exit 4",
    )
    assert (done.returncode, done.stdout) == (4, "out\n"), done.stderr
    assert "err\n" in done.stderr.splitlines(keepends=True)
    data = json.loads((art / "result.json").read_text())
    assert (data["verdict"], data["exit_code"]) == ("FAIL", 4)
    assert "kexec" in data["timings"]


def test_a_lab_session_takes_commands_until_it_is_taken_down(local_lab: LocalLab) -> None:
    name = f"lab-{os.getpid()}"
    up = mkh("up", "--name", name, "--lg-env", str(local_lab.env_file))
    assert up.returncode == 0, up.stderr
    try:
        first = mkh("exec", name, "--", "echo 7 > /tmp/kept; cat /proc/cmdline")
        assert first.returncode == 0 and "mkkernel_pool=256M" in first.stdout, first.stderr
        second = mkh("exec", name, "--", "cat /tmp/kept; exit 3")
        assert (second.returncode, second.stdout) == (3, "7\n"), second.stderr
    finally:
        down = mkh("down", name)
    assert down.returncode == 0, down.stderr


def test_the_suite_runs_on_the_lab_machine_and_skips_what_needs_qemu(
    local_lab: LocalLab, tmp_path: Path
) -> None:
    """`pytest --lg-env` (what make test-hw runs) against the stand-in, on a few QEMU tests."""
    junit = tmp_path / "junit.xml"
    # A test run of its own (its QEMU names are its own; the stand-in's are this run's).
    fresh_run = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTEST_XDIST_WORKER", "MKH_TEST_RUN", "MKH_QEMU_NAME")
    }
    chosen = "exit_status or long_and_multiline or cpu_goes_offline or put_file or ttys1 or smp"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-rs",
            f"--basetemp={tmp_path / 'inner'}",
            f"--junitxml={junit}",
            "--lg-env",
            str(local_lab.env_file),
            "tests/qemu/test_guest.py",
            "-k",
            chosen,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
        env=fresh_run,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    suite = ElementTree.parse(junit).getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("skipped"), suite.get("failures")) == ("7", "3", "0")
    assert "on a lab machine: sets the guest's CPU count" in done.stdout
    assert "on a lab machine: reads the guest's second UART" in done.stdout
    # The tests that ran booted the kernel under test on the machine.
    consoles = list((tmp_path / "inner").rglob("console-serial.log"))
    assert len(consoles) == 4
    assert all("mkh-guest: ready" in log.read_text() for log in consoles)
