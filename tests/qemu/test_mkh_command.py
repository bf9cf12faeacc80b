"""The `mkh` command line as users and later checks call it."""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from pathlib import Path

import pexpect
import pytest

from harness.build.images import Images
from harness.build.initramfs import BOOT_INITRAMFS, BOOT_KERNEL
from harness.core.errors import EXIT_CRASH, EXIT_TIMEOUT
from harness.multikernel import dtb
from harness.multikernel.dtb import Instance
from tests.conftest import MKH, TRANSPORT, kasan_shadow, qemu_processes

pytestmark = pytest.mark.qemu


def mkh(
    *args: str, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MKH, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


def test_run_prints_nproc(guest_images: Images) -> None:
    done = mkh("run", "--smp", "4", "--", "nproc")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "4\n"


def test_run_exit_status_passes_through(guest_images: Images) -> None:
    done = mkh("run", "--", "sh", "-c", "exit 7")
    assert done.returncode == 7, done.stderr


@pytest.mark.parametrize(("line", "status"), [("exit 3", 3), ("set -e; false; echo no", 1)])
def test_run_exit_in_the_command_line_is_its_status(
    guest_images: Images, line: str, status: int
) -> None:
    started = time.monotonic()
    done = mkh("run", "--", line)
    assert (done.returncode, done.stdout) == (status, ""), done.stderr
    assert time.monotonic() - started < 120  # not a wait for the 300 s timeout


def test_run_put_delivers_the_file(guest_images: Images, tmp_path: Path) -> None:
    src = tmp_path / "x"
    src.write_text("line one\nline two\n")
    done = mkh("run", "--put", f"{src}:/tmp/x", "--", "cat", "/tmp/x")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "line one\nline two\n"


def test_run_script(guest_images: Images, tmp_path: Path) -> None:
    script = tmp_path / "s.sh"
    script.write_text("#!/bin/sh\n# a comment\necho from-script\nexit 5\n")
    done = mkh("run", "--script", str(script))
    assert (done.returncode, done.stdout) == (5, "from-script\n"), done.stderr


def test_run_panic_exits_with_the_crash_code(guest_images: Images, tmp_path: Path) -> None:
    art = tmp_path / "art"
    done = mkh("run", "--artifacts", str(art), "--", "sh", "-c", "echo c > /proc/sysrq-trigger")
    assert done.returncode == EXIT_CRASH, done.stderr
    assert "panic" in done.stderr and "Kernel panic - not syncing" in done.stderr
    assert "Kernel panic" in (art / "console-kmsg.log").read_text()
    assert "Kernel panic" not in (art / "console-ttyS0.log").read_text()  # the shell's UART


def test_run_script_fails_on_a_warning_of_an_instance_started_by_hand(
    guest_images: Images, tmp_path: Path
) -> None:
    """Its kernel logs to ttyS1 at level 1 only, which no harness log sees; the host's copy does."""
    web = Instance("web-server", 1, (1,), 0x10000000)
    blob = tmp_path / "web.dtb"
    blob.write_bytes(dtb.to_dtb([web]))
    warning = f"WARNING: CPU: 0 PID: 1 at {web.name}-by-hand"
    run = f"dmesg -n 1; echo {warning} > /dev/kmsg"
    cmdline = f'console=ttyS1 mkkernel_uart=ttyS1 mkh.tty=ttyS1 mkh.run="{run}"'
    log = f"/sys/fs/multikernel/instances/{web.name}/log"
    logged = shlex.quote(f"] {warning}$")  # the record, not the command line that has it
    script = tmp_path / "by-hand.sh"
    script.write_text(
        "set -e\n"
        "cat /tmp/web.dtb > /sys/fs/multikernel/device_tree\n"
        "echo 0 > /sys/devices/system/cpu/cpu1/online\n"
        f"mkctl load --id {web.id} --kernel {BOOT_KERNEL} --initrd {BOOT_INITRAMFS} "
        f"--cmdline {shlex.quote(cmdline)}\n"
        f"mkctl exec --id {web.id}\n"
        # Until the host has it: then only the harness's last look can fail the run.
        f"for i in $(seq 240); do grep -q {logged} {log} && break; sleep 1; done\n"
        f"grep -c {logged} {log}\n"
    )
    art = tmp_path / "art"
    done = mkh(
        "run", "--memory", "1G", "--append", "mkkernel_pool=512M", "--put", f"{blob}:/tmp/web.dtb",
        "--artifacts", str(art), "--script", str(script),
    )  # fmt: skip
    assert done.stdout == "1\n", done.stderr  # the script saw the line in the host's copy
    assert done.returncode == EXIT_CRASH, done.stderr
    assert f"kernel crash (warning) on instance {web.name}" in done.stderr
    assert warning in (art / f"instance-{web.name}.log").read_text()


def test_run_timeout_kills_qemu_and_keeps_logs(guest_images: Images, tmp_path: Path) -> None:
    art = tmp_path / "art"
    done = mkh(
        "run",
        "--artifacts",
        str(art),
        "--timeout",
        "3",
        "--",
        "echo waiting-$((6 * 7)); sleep 1000",
    )
    assert done.returncode == EXIT_TIMEOUT, done.stderr
    assert "timeout" in done.stderr and str(art) in done.stderr
    # What the command printed is kept: on the shell's console, or in the SSH transcript.
    kept = "ssh.log" if TRANSPORT == "ssh" else "console-ttyS0.log"
    assert "waiting-42" in (art / kept).read_text()
    for name in (
        "qemu-cmdline.txt",
        "kernel.config",
        "timings.json",
        "console-ttyS1.log",
        "console-kmsg.log",
    ):
        assert (art / name).exists(), name
    assert "-no-reboot" in (art / "qemu-cmdline.txt").read_text()


def test_second_build_does_not_run_make(guest_images: Images, tmp_path: Path) -> None:
    # A `make` that fails and leaves a trace proves the cached build never calls it.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    trace = tmp_path / "make-called"
    (bin_dir / "make").write_text(f"#!/bin/sh\ntouch {trace}\nexit 1\n")
    (bin_dir / "make").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    done = mkh("build", env=env)
    assert done.returncode == 0, done.stderr
    assert not trace.exists()
    assert f"kernel: {guest_images.kernel}" in done.stdout.splitlines()
    assert f"initramfs: {guest_images.initrd}" in done.stdout.splitlines()


def shell_session(*args: str, console: str = "ttyS0") -> pexpect.spawn:
    """`mkh shell ARGS` on a pseudo-terminal, attached to `console` and at its prompt."""
    session = pexpect.spawn(
        MKH[0], [*MKH[1:], "shell", *args], encoding="utf-8", timeout=300, dimensions=(40, 120)
    )
    if console == "ttyS0" and TRANSPORT == "ssh":
        session.expect("logged in over SSH; leave with exit or Ctrl-]")
    else:
        session.expect(f"attached to {console}; leave with Ctrl-]")
    session.expect(r"mkh-guest:\d+ # ")
    return session


def leave(session: pexpect.spawn) -> None:
    """Ctrl-] must end the session cleanly and leave no QEMU behind."""
    session.send("\x1d")
    session.expect(pexpect.EOF)
    session.close()
    assert session.exitstatus == 0
    assert qemu_processes() == []


def test_shell_is_interactive_and_leaving_tears_the_guest_down(guest_images: Images) -> None:
    session = shell_session("--smp", "2")
    session.sendline("echo $((20 + 22))-answer; nproc")
    session.expect(r"42-answer\r\n2\r\n")
    leave(session)


def test_shell_instance_lands_in_the_spawned_kernel(guest_images: Images) -> None:
    session = shell_session("--instance", "web-server", console="ttyS1")
    try:
        session.sendline(
            # Anchored: with PCI an AMD host's flags line has extd_apicid.
            "cat /sys/devices/system/cpu/online; grep -E '^(initial )?apicid' /proc/cpuinfo; "
            "grep MemTotal /proc/meminfo"
        )
        session.expect(r"\r\n0\r\napicid\s+: 1\r\ninitial apicid\s+: 1\r\nMemTotal:\s+(\d+) kB")
        low = 448 * 1024 - kasan_shadow(guest_images, 512 * 1024)
        assert low < int(session.match.group(1)) <= 512 * 1024
    finally:
        leave(session)


def test_shell_instance_reaches_an_instance_without_uart(guest_images: Images) -> None:
    args = ("--transport", "ssh", "--instance", "web-server", "--instance-console", "mkcon")
    session = shell_session(*args, console="mkcon1")
    try:
        session.sendline("cat /proc/consoles; tty; echo $((6 * 7))-via-mkcon")
        session.expect(r"\r\nmkcon0 .*\r\n/dev/mkcon0\r\n42-via-mkcon\r\n")
    finally:
        leave(session)


def test_shell_instance_database_lands_in_a_two_cpu_kernel(guest_images: Images) -> None:
    session = shell_session("--instance", "database", console="ttyS1")
    try:
        session.sendline("nproc; grep '^apicid' /proc/cpuinfo; ls /sys/fs/multikernel/instances")
        session.expect(r"\r\n2\r\napicid\s+: 2\r\napicid\s+: 3\r\ndatabase\r\n")
    finally:
        leave(session)
