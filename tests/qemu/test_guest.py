"""Boot real guests and check what the kernel and the harness actually did."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.core.errors import GuestTimeout, KernelCrash
from harness.target.base import Target
from tests.conftest import qemu_only

pytestmark = pytest.mark.qemu
Boot = Callable[..., Target]


def wait_for_text(path: Path, text: str, seconds: float = 10.0) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        content = path.read_text(errors="replace") if path.exists() else ""
        if text in content:
            return content
        time.sleep(0.1)
    raise AssertionError(f"{text!r} never reached {path}")


@pytest.mark.qemu_guest("sets the guest's CPU count")
@pytest.mark.parametrize("smp", [1, 4])
def test_guest_sees_as_many_cpus_as_smp(boot: Boot, smp: int) -> None:
    guest = boot(smp=smp)
    assert guest.check("nproc").strip() == str(smp)
    assert guest.check("uname -r").startswith("6.12")
    assert qemu_only(guest).machine is not None and qemu_only(guest).machine.status() == "running"


def test_exit_status_and_output_pass_through(boot: Boot) -> None:
    guest = boot()
    result = guest.run("echo out; echo err >&2; sh -c 'exit 7'")
    assert result.status == 7
    assert result.output == "out\nerr\n"
    assert guest.run("printf 'no newline'").output == "no newline"
    assert guest.run("false").status == 1
    refused = guest.run("echo (unbalanced", timeout=30)  # no wait for the timeout
    assert refused.status == 2 and "syntax error" in refused.output
    assert guest.check("echo still-here") == "still-here\n"
    sourced = guest.run("echo a\nif true; then", timeout=30)  # goes through a script file
    assert sourced.status == 2 and "syntax error" in sourced.output
    assert guest.check("echo still-here") == "still-here\n"


def test_long_and_multiline_commands_run_through_a_file(boot: Boot) -> None:
    guest = boot()
    words = " ".join(f"w{n}" for n in range(300))
    assert guest.check(f"echo {words} | wc -w").strip() == "300"
    assert guest.check("for i in 1 2 3\ndo echo $i # counted\ndone").split() == ["1", "2", "3"]


def test_cpu_goes_offline_through_sysfs(boot: Boot) -> None:
    guest = boot(smp=4)
    assert guest.check("cat /sys/devices/system/cpu/online").strip() == "0-3"
    guest.check("echo 0 > /sys/devices/system/cpu/cpu1/online")
    assert guest.check("cat /sys/devices/system/cpu/cpu1/online").strip() == "0"
    assert guest.check("cat /sys/devices/system/cpu/online").strip() == "0,2-3"
    assert guest.check("nproc").strip() == "3"


@pytest.mark.qemu_guest("reads the guest's second UART")
def test_ttys1_output_arrives_in_its_own_log(boot: Boot) -> None:
    guest = boot()
    guest.check("test -c /dev/ttyS1")
    # The shell computes the text, so the command echoed on ttyS0 does not contain it.
    guest.check("echo hello-from-$((6 * 7)) > /dev/ttyS1")
    wait_for_text(guest.run_dir.console_log("ttyS1"), "hello-from-42")
    assert "hello-from-42" not in guest.run_dir.console_log("ttyS0").read_text()


@pytest.mark.qemu_guest("reads QEMU's kernel log port")
def test_every_kernel_message_reaches_the_kmsg_stream(boot: Boot) -> None:
    guest = boot()
    guest.check("echo mkh-kmsg-marker > /dev/kmsg")
    content = wait_for_text(guest.run_dir.console_log("kmsg"), "mkh-kmsg-marker")
    assert "Linux version 6.12" in content  # the boot log is there too


def test_put_file_arrives_byte_for_byte(boot: Boot, tmp_path: Path) -> None:
    payload = tmp_path / "payload.bin"
    payload.write_bytes(bytes(range(256)) * 64 + b"\r\n\x00end")
    guest = boot(put=[(payload, "/tmp/in/payload.bin")])
    digest = guest.check("sha256sum /tmp/in/payload.bin").split()[0]
    assert digest == hashlib.sha256(payload.read_bytes()).hexdigest()


def test_write_file_through_the_console(boot: Boot) -> None:
    guest = boot()
    data = bytes(range(256)) * 8
    guest.write_file("/tmp/w.bin", data)
    assert guest.check("sha256sum /tmp/w.bin").split()[0] == hashlib.sha256(data).hexdigest()


def test_panic_is_reported_as_a_crash_with_its_excerpt(boot: Boot) -> None:
    guest = boot()
    with pytest.raises(KernelCrash) as info:
        guest.run("echo c > /proc/sysrq-trigger", timeout=60)
    assert info.value.kind == "panic"
    assert "sysrq triggered crash" in info.value.excerpt
    machine = qemu_only(guest).machine
    assert machine is not None and machine.process is not None
    machine.process.wait(timeout=30)  # panic=-1 with -no-reboot ends QEMU by itself
    assert not machine.running()
    qemu_only(guest).shell.take_crash()


def test_a_panic_after_the_last_command_fails_the_run_though_qemu_is_gone(boot: Boot) -> None:
    guest = boot()
    guest.check("(sleep 1; echo c > /proc/sysrq-trigger) > /dev/null 2>&1 &")
    process = qemu_only(guest).machine.process
    assert process is not None
    process.wait(timeout=60)
    with pytest.raises(KernelCrash) as info:
        guest.finish()
    assert (info.value.console, info.value.kind) == ("kmsg", "panic")
    qemu_only(guest).shell.take_crash()


def test_a_kernel_warning_on_the_kmsg_stream_fails_the_step(boot: Boot) -> None:
    guest = boot()
    with pytest.raises(KernelCrash) as info:
        # No wait needed: the step ends only once its kernel log has caught up.
        guest.run("echo '<4>WARNING: CPU: 0 PID: 1 at test.c:1 probe+0x0/0x1' > /dev/kmsg")
    assert info.value.kind == "warning"
    assert info.value.console == "kmsg"
    qemu_only(guest).shell.take_crash()


def test_timeout_quotes_the_console_and_teardown_kills_qemu(boot: Boot) -> None:
    guest = boot()
    process = qemu_only(guest).machine.process
    assert process is not None
    with pytest.raises(GuestTimeout) as info:
        qemu_only(guest).shell.run("echo still-$((40 + 2)); sleep 600", timeout=3)
    assert "still-42" in info.value.tail  # the command's output, not its echo
    guest.close()
    assert process.poll() is not None
    assert "still-42" in guest.run_dir.console_log("ttyS0").read_text()
