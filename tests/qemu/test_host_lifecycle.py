"""The host's own lifecycle with instances running: restart, power-off, kexec (INTERFACE.md §10)."""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable
from dataclasses import replace

import pytest

from harness.build.initramfs import BOOT_KERNEL
from harness.core.errors import KernelCrash
from harness.multikernel import dtb
from harness.multikernel.dtb import Instance
from harness.multikernel.mk import MKCON, Multikernel
from harness.target.base import Target
from harness.target.shell import Shell
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


# ---- A panic of the host: the instances run on ----

TICK = "mkh-tick"
TICK_LINE = re.compile(rf"{TICK} (\d+\.\d+)")
# Ticks come every 0.5 s; a stopped or stalled instance leaves a longer gap.
TICK_GAP = 3.0


def start_logging_ticks(shell: Shell) -> None:
    """A counter in the instance: its uptime into its kernel log, every 0.5 s.

    The log goes out through a polled port the instance's kernel writes
    itself: it reaches the harness whatever another kernel does to the
    UARTs, and shows that the instance's CPU and its timers go on.
    """
    shell.check(
        f"(while :; do echo \"{TICK} $(cut -d' ' -f1 /proc/uptime)\" > /dev/kmsg; "
        "sleep 0.5; done) > /dev/null 2>&1 &"
    )


def logged_ticks(guest: Target) -> list[float]:
    log = guest.run_dir.console_log("kmsg1").read_text(errors="replace")
    return [float(t) for t in TICK_LINE.findall(log)]


def ticks_until(guest: Target, until: float, timeout: float = 120.0) -> list[float]:
    """The instance's ticks, once one reached `until` (its uptime)."""
    deadline = time.monotonic() + timeout
    while True:
        ticks = logged_ticks(guest)
        if (ticks and ticks[-1] >= until) or time.monotonic() > deadline:
            return ticks
        time.sleep(1)


def assert_counted_on(ticks: list[float], panicked: float) -> None:
    """The instance counted for 10 s of its uptime after the host's panic, without a stall."""
    after = [t for t in ticks if t >= panicked]
    assert after and after[-1] >= panicked + 10, (panicked, ticks[-5:])
    gap = max(b - a for a, b in itertools.pairwise([panicked, *after]))
    assert gap < TICK_GAP, (gap, after)


def test_an_instance_runs_on_after_its_host_panicked(boot: Boot) -> None:
    # panic=0: the panicked host stays up, spinning, instead of ending QEMU.
    guest = boot(smp=2, memory="2G", append="mkkernel_pool=1G panic=0")
    mk = Multikernel(guest, guest.instances)
    shell = mk.spawn(WEB)
    start_logging_ticks(shell)
    ticks_until(guest, 0.0)
    with pytest.raises(KernelCrash) as info:
        guest.run("echo c > /proc/sysrq-trigger", timeout=60)
    assert info.value.kind == "panic"
    qemu_only(guest).shell.take_crash()
    panicked = logged_ticks(guest)[-1]
    assert_counted_on(ticks_until(guest, panicked + 10), panicked)
    # Its shell is its own UART: it answers with the host gone.
    assert shell.check("echo alive-$((6 * 7))").strip() == "alive-42"
    log = guest.run_dir.console_log("kmsg1").read_text(errors="replace")
    assert "Kernel panic" not in log and "the host asks" not in log, log[-2000:]


def e820_reserved(dmesg: str) -> list[tuple[int, int]]:
    """The ranges a kernel's e820 map gave it as reserved (its boot log)."""
    found = re.findall(r"BIOS-e820: \[mem 0x([0-9a-f]+)-0x([0-9a-f]+)\] reserved", dmesg)
    return [(int(a, 16), int(b, 16)) for a, b in found]


def iomem_ranges(iomem: str, name: str) -> list[tuple[int, int]]:
    """The ranges /proc/iomem lists under `name`, at any depth."""
    found = re.findall(rf"^ *([0-9a-f]+)-([0-9a-f]+) : {name}$", iomem, re.MULTILINE)
    return [(int(a, 16), int(b, 16)) for a, b in found]


def test_an_instance_counts_on_while_a_kdump_kernel_boots(boot: Boot) -> None:
    guest = boot(smp=2, memory="2G", append="mkkernel_pool=1G crashkernel=192M")
    qemu = qemu_only(guest)
    mk = Multikernel(guest, guest.instances)
    shell = mk.spawn(WEB)
    pool = mk.pool()
    assert pool is not None
    # Where below 1 MiB the instances' CPUs start and park, listed as the host's.
    iomem = guest.check("cat /proc/iomem")
    low = iomem_ranges(iomem, "Multikernel trampoline")
    low += iomem_ranges(iomem, "Multikernel low memory")
    assert len(low) == 2 and all(end < 1 << 20 for _, end in low), iomem
    qemu.load_crash_kernel()
    assert [k.type for k in mk.kimages() if k.mk_id == 0] == ["crash"]
    start_logging_ticks(shell)
    ticks_until(guest, 0.0)
    panicked = logged_ticks(guest)[-1]
    crash = qemu.crash_into_kdump()
    assert crash is not None and crash.kind == "panic"
    # The instance counted while the kdump kernel booted: ticks up to its shell.
    at_shell = logged_ticks(guest)[-1]
    assert at_shell > panicked
    # The kdump kernel: one CPU, the old host's memory to dump, none of the
    # pool as its RAM, and below 1 MiB what the instances use reserved.
    assert guest.check("nproc").strip() == "1"
    assert guest.run("test -r /proc/vmcore").status == 0
    assert "crashkernel" not in guest.check("cat /proc/cmdline")
    for start, end in iomem_ranges(guest.check("cat /proc/iomem"), "System RAM"):
        assert end < pool.region.start or start > pool.region.end, (hex(start), hex(end))
    reserved = e820_reserved(guest.check("dmesg"))
    for start, end in low:
        assert any(a <= start and end <= b for a, b in reserved), (hex(start), reserved)
    assert_counted_on(ticks_until(guest, panicked + 10), panicked)
    # The kdump kernel's serial driver probed, and so reset, the legacy
    # UARTs: the instance's shell there no longer hears it (its log does).
    guest.instances.release(shell, "the kdump kernel reset its UART")


# ---- Live update: the host kexecs into a kernel with the series, the instances run on ----

BOOT_ID = "cat /proc/sys/kernel/random/boot_id"
TICKS = "/tmp/ticks"


def start_ticking(shell: Shell) -> None:
    """A counter in the instance: its uptime into a file, every 0.2 s."""
    shell.check(f"(while :; do cut -d' ' -f1 /proc/uptime >> {TICKS}; sleep 0.2; done) &")


def longest_gap(shell: Shell) -> float:
    ticks = [float(t) for t in shell.check(f"cat {TICKS}").split()]
    assert len(ticks) > 5, ticks
    return max(b - a for a, b in itertools.pairwise(ticks))


def test_a_running_instance_keeps_running_through_a_host_live_update(boot: Boot) -> None:
    # Its console over shared memory: the new host's serial driver resets
    # the legacy UARTs as it probes them, an instance's included.
    guest = boot(smp=2, memory="2G", append="mkkernel_pool=1G", transport="ssh")
    mk = Multikernel(guest, guest.instances)
    shell = mk.spawn(WEB, console=MKCON)
    start_ticking(shell)
    before = mk.views()
    host_boot, instance_boot = guest.check(BOOT_ID), shell.check(BOOT_ID)
    uptime = float(shell.check("cut -d' ' -f1 /proc/uptime"))
    started = time.monotonic()
    guest.kexec()
    downtime = time.monotonic() - started
    # A new host kernel, and the same instance kernel, which went on.
    assert guest.check(BOOT_ID) != host_boot
    assert shell.check(BOOT_ID) == instance_boot
    assert float(shell.check("cut -d' ' -f1 /proc/uptime")) > uptime
    log = guest.check("dmesg")
    assert "instance web-server: taken over from the previous host kernel: active" in log, log
    assert mk.views() == before
    # It kept counting: no gap as long as the time the host was away.
    time.sleep(1)
    assert longest_gap(shell) < downtime
    assert mk.ping(WEB.id).ok
    # Its CPU is still its own: the new host cannot bring it up.
    online = guest.run("echo 1 > /sys/devices/system/cpu/cpu1/online")
    assert online.status != 0
    assert guest.check("cat /sys/devices/system/cpu/cpu1/online").strip() == "0"
    # Its console came through: the shell on it answers, and the log of the
    # stream has the whole run, what it printed before and after.
    assert shell.check("echo after-$((6 * 7))").strip() == "after-42"
    assert "Linux version" in guest.run_dir.console_log(f"mkcon{WEB.id}").read_text()
    # The new host halts and removes it, and the pool is whole again.
    assert mk.halt(WEB.id).ok
    assert mk.status(WEB.name) == "ready"
    assert mk.remove(WEB.name).ok
    pool = mk.pool()
    assert pool is not None and pool.free == pool.region.size


@pytest.mark.parametrize("how", ["loaded", "halted"])
def test_a_loading_instance_is_started_by_the_new_host(boot: Boot, how: str) -> None:
    guest, mk = boot_host(boot)
    if how == "loaded":
        mk.stage(WEB)
    else:
        # Its segments were run over: the old host puts them back before the kexec.
        mk.spawn(WEB)
        assert mk.halt(WEB.id).ok
    assert mk.status(WEB.name) == "loading"
    image = [k for k in mk.kimages() if k.mk_id == WEB.id]
    before = mk.views()
    guest.kexec()
    log = guest.check("dmesg")
    assert "instance web-server: taken over from the previous host kernel: loading" in log, log
    assert mk.views() == before
    assert [k for k in mk.kimages() if k.mk_id == WEB.id] == image
    # Its CPU is offline again, not claimed (the new host's SMP bring-up
    # reset it, then took it offline): it starts the image when asked.
    assert guest.check("cat /sys/devices/system/cpu/cpu1/online").strip() == "0"
    shell = mk.start(WEB)
    assert shell.check("echo up-$((6 * 7))").strip() == "up-42"
    assert mk.status(WEB.name) == "active"
    assert mk.ping(WEB.id).ok


def test_an_image_changed_after_its_load_is_dropped_by_the_new_host(boot: Boot) -> None:
    guest, mk = boot_host(boot)
    mk.stage(WEB)
    guest.check(f"echo image > {DEBUGFS}/host_inject")
    guest.kexec()
    log = guest.check("dmesg")
    assert re.search(
        r"instance web-server: segment \d+ at 0x[0-9a-f]+ changed since the previous host "
        r"loaded it; image dropped, load it again",
        log,
    ), log
    assert "instance web-server: taken over from the previous host kernel: ready" in log
    assert mk.status(WEB.name) == "ready"
    assert [k for k in mk.kimages() if k.mk_id == WEB.id] == []
    # Loaded again, it starts.
    shell = mk.spawn(WEB)
    assert shell.check("echo up-$((6 * 7))").strip() == "up-42"


CORRUPTED = {
    # The table's FDT cannot be read: where the pool was stays hidden.
    "magic": "host handover ignored: bad FDT magic; no instance restored, and the memory "
    "the previous host's pool had stays hidden",
    # It reads, but an instance lies outside the pool: the pool is kept, unused.
    "memory": "host handover ignored: instance web-server: its memory is not where its "
    "size fits in the pool; no instance restored, and the pool stays reserved and unused",
}


@pytest.mark.parametrize("mode", sorted(CORRUPTED))
def test_a_corrupted_host_handover_restores_nothing_and_keeps_the_pool(
    boot: Boot, mode: str
) -> None:
    guest, mk = boot_host(boot)
    shell = mk.spawn(WEB)
    guest.check(f"echo {mode} > {DEBUGFS}/host_inject")
    guest.kexec()
    # Not knowing it, the new host brought the instance's CPU up as its own.
    guest.instances.release(shell, "its host handed over a corrupted table")
    log = guest.check("dmesg")
    assert CORRUPTED[mode] in log, log
    assert mk.instances() == []
    # None of the pool is handed out, nor is it RAM of the new host.
    pool = mk.pool()
    assert (pool is not None) == (mode == "memory")
    refused = mk.upload(dtb.to_dtb([replace(WEB, name="next", id=2)]))
    assert refused.errno == "ENOSPC", refused.output
