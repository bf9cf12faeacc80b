"""The host's own lifecycle with instances running: restart, power-off, kexec (INTERFACE.md §10)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from harness.build.initramfs import BOOT_KERNEL
from harness.core.errors import KernelCrash
from harness.multikernel.dtb import Instance
from harness.multikernel.mk import Multikernel
from harness.target.base import Target
from tests.conftest import qemu_only

pytestmark = pytest.mark.qemu
Boot = Callable[..., Target]

WEB = Instance("web-server", 1, (1,), 0x10000000)
DEBUGFS = "/sys/kernel/debug/multikernel"
# Byte 0x237 of a bzImage holds bits 8-15 of xloadflags; XLF_MULTIKERNEL is bit 8.
XLOADFLAGS_HIGH = 0x237


def boot_host(boot: Boot) -> tuple[Target, Multikernel]:
    guest = boot(smp=2, memory="2G", append="mkkernel_pool=1G")
    return guest, Multikernel(guest, guest.instances)


def host_goes_down(guest: Target, command: str) -> tuple[str, str]:
    """Run `command` in the host, in the background; the host's and the instance's logs after."""
    guest.check(f"(sleep 1; {command}) > /dev/null 2>&1 &")
    process = qemu_only(guest).machine.process
    assert process is not None
    process.wait(timeout=180)  # -no-reboot: a restart ends QEMU too
    host = guest.run_dir.console_log("kmsg").read_text(errors="replace")
    instance = guest.run_dir.console_log("kmsg1").read_text(errors="replace")
    return host, instance


def test_the_host_halts_a_running_instance_before_it_powers_off(boot: Boot) -> None:
    guest, mk = boot_host(boot)
    mk.spawn(WEB)
    host, instance = host_goes_down(guest, "poweroff -f")
    halted = "instance web-server: halted before the host powers off"
    assert halted in host, host[-2000:]
    assert "reboot: Power down" in host[host.index(halted) :]
    # It was asked, and shut itself down as a halt asks it to.
    assert "the host asks this kernel to shut down" in instance, instance[-2000:]


def test_an_instance_that_ignores_the_request_is_forced_down_before_the_host_restarts(
    boot: Boot,
) -> None:
    guest, mk = boot_host(boot)
    shell = mk.spawn(WEB)
    shell.check(f"echo ignore > {DEBUGFS}/halt_inject")
    host, _ = host_goes_down(guest, "reboot -f")
    forced = (
        "instance web-server: did not shut down (-110); forced to halt before the host restarts"
    )
    assert forced in host, host[-2000:]
    assert "reboot: Restarting system" in host[host.index(forced) :]


def test_a_host_kexec_into_a_kernel_without_multikernel_support_is_refused(boot: Boot) -> None:
    guest, mk = boot_host(boot)
    shell = mk.spawn(WEB)
    # The suite's kernel with XLF_MULTIKERNEL cleared: a kernel that cannot keep instances.
    guest.check(
        f"cp {BOOT_KERNEL} /tmp/plain && "
        f"b=$(dd if=/tmp/plain bs=1 skip={XLOADFLAGS_HIGH} count=1 2>/dev/null | od -An -tu1) && "
        f'printf "\\\\$(printf %o $((b & ~1)))" | '
        f"dd of=/tmp/plain bs=1 seek={XLOADFLAGS_HIGH} conv=notrunc 2>/dev/null"
    )
    refused = guest.run("mkctl kexec --kernel /tmp/plain --cmdline console=ttyS0")
    assert refused.status == 1 and "EBUSY" in refused.output, refused.output
    assert (
        "kexec refused: instance web-server is active, and the new kernel has no multikernel "
        "support" in guest.check("dmesg | tail -3")
    )
    # Nothing changed: the host runs on, and so does the instance.
    assert mk.status(WEB.name) == "active"
    assert mk.ping(WEB.id).ok
    assert shell.check("echo still-$((6 * 7))").strip() == "still-42"


def test_an_instance_runs_on_after_its_host_panicked(boot: Boot) -> None:
    # panic=0: the panicked host stays up, spinning, instead of ending QEMU.
    guest = boot(smp=2, memory="2G", append="mkkernel_pool=1G panic=0")
    mk = Multikernel(guest, guest.instances)
    shell = mk.spawn(WEB)
    before = int(shell.check("cut -d. -f1 /proc/uptime"))
    with pytest.raises(KernelCrash) as info:
        guest.run("echo c > /proc/sysrq-trigger", timeout=60)
    assert info.value.kind == "panic"
    qemu_only(guest).shell.take_crash()
    # Its shell is its own UART: it answers with the host gone, and its
    # uptime went on through the host's panic.
    time.sleep(3)
    assert shell.check("echo alive-$((6 * 7))").strip() == "alive-42"
    assert int(shell.check("cut -d. -f1 /proc/uptime")) >= before + 3
    log = guest.run_dir.console_log("kmsg1").read_text(errors="replace")
    assert "Kernel panic" not in log and "the host asks" not in log, log[-2000:]
