"""What the second kernel review fixed: the host stays safe whatever an instance or a caller does.

Each test here fails on the series before that review: a kexec_file_load
refused while a halt waits, id bits that load a plain image, an instance
that turns ACPI back on, a console device any user can open once its mode
allows, a pool silently placed anywhere for @0, multikernel loads that use
up the host's kexec load limit, a stop taken for granted, a stopped CPU
left with machine checks off, an instance on
half a core, an instance that polls the machine-check banks or turns
machine checks off.  One shows what the host already survived and still must: an
instance that writes garbage over the memory it shares with the host.
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Callable

import pytest

from harness.build.initramfs import BOOT_INITRAMFS, BOOT_KERNEL
from harness.multikernel import dtb
from harness.multikernel.dtb import Instance
from harness.multikernel.mk import Multikernel, errno_name
from harness.target.base import Target
from tests.conftest import qemu_only

pytestmark = pytest.mark.qemu
Boot = Callable[..., Target]

WEB = Instance("web-server", 1, (1,), 0x10000000)
DEBUGFS = "/sys/kernel/debug/multikernel"
# The uapi's flag bits (include/uapi/linux/kexec.h of the series).
KEXEC_MULTIKERNEL = 0x10
MK_ID_SHIFT = 5
# A graceful halt waits this long for an acknowledgment (kernel/multikernel/kexec.c).
HALT_WAIT = 10.0
# An instance's shared area: console rings and message rings (include/linux/multikernel.h).
SHARED_SIZE = 108 << 10
SCRIBBLE_SECONDS = 15


def boot_host(
    boot: Boot, append: str = "mkkernel_pool=1G", smp: int = 2, threads: int = 1
) -> tuple[Target, Multikernel]:
    guest = boot(smp=smp, threads=threads, memory="2G", append=append)
    return guest, Multikernel(guest, guest.instances)


def load_plain(guest: Target, flags: int = 0) -> str | None:
    """`mkctl load --id 0` with extra kexec flags: the errno name, or None when it loaded."""
    args = ["mkctl", "load", "--id", "0", "--kernel", BOOT_KERNEL, "--initrd", BOOT_INITRAMFS]
    if flags:
        args += ["--flags", f"{flags:#x}"]
    result = guest.run(shlex.join(args) + " 2>&1")
    return None if result.status == 0 else errno_name(result.output) or result.output


def test_plain_kexec_load_works_while_a_graceful_halt_waits(boot: Boot) -> None:
    guest, mk = boot_host(boot)
    shell = mk.spawn(WEB)
    shell.check(f"echo ignore > {DEBUGFS}/halt_inject")
    load = shlex.join(
        ["mkctl", "load", "--id", "0", "--kernel", BOOT_KERNEL, "--initrd", BOOT_INITRAMFS]
    )
    # One command, so that the load comes well inside the halt's wait: the
    # halt in its own session, so that it outlives this command on either
    # transport; "done" in halt.out says when it returned.
    out = guest.check(
        f"setsid sh -c 'mkctl halt --id {WEB.id} > /tmp/halt.out 2>&1; echo done >> /tmp/halt.out'"
        f" > /dev/null 2>&1 < /dev/null & sleep 1; {load} 2>&1; echo loaded=$?; cat /tmp/halt.out"
    )
    assert "loaded=0" in out, out  # was EBUSY: the halt held kexec_lock
    assert "done" not in out, "the halt was over before the load"
    assert [k.mk_id for k in mk.kimages() if k.type == "default"] == [0]
    assert mk.unload(0).ok

    guest.check("while ! grep -q done /tmp/halt.out; do sleep 0.2; done", timeout=HALT_WAIT + 30)
    assert errno_name(guest.check("cat /tmp/halt.out")) == "ETIMEDOUT"
    assert "shutdown request ignored" in guest.run_dir.console_log("kmsg1").read_text()
    assert mk.status(WEB.name) == "active"
    assert mk.halt(WEB.id, force=True).ok


def test_instance_id_bits_without_the_multikernel_flag_are_einval(boot: Boot) -> None:
    guest, mk = boot_host(boot)
    assert mk.upload(dtb.to_dtb([WEB])).ok
    # 6.12 refused these flags; with the series they loaded a plain image.
    assert load_plain(guest, WEB.id << MK_ID_SHIFT) == "EINVAL"
    assert mk.kimages() == []
    assert mk.status(WEB.name) == "ready"
    # With KEXEC_MULTIKERNEL the same bits name the instance.
    assert load_plain(guest, KEXEC_MULTIKERNEL | WEB.id << MK_ID_SHIFT) is None
    assert [(k.mk_id, k.type) for k in mk.kimages()] == [(WEB.id, "multikernel")]
    assert mk.status(WEB.name) == "loading"


def test_multikernel_loads_leave_the_hosts_kexec_load_limit_alone(boot: Boot) -> None:
    guest, mk = boot_host(boot)
    guest.check("echo 1 > /proc/sys/kernel/kexec_load_limit_reboot")
    assert mk.upload(dtb.to_dtb([WEB])).ok
    for _ in range(3):
        assert mk.load(WEB.id).ok
        assert mk.unload(WEB.id).ok
    assert load_plain(guest) is None  # the one plain load the limit allows
    assert load_plain(guest) == "EPERM"


def test_acpi_force_on_an_instance_command_line_leaves_acpi_to_the_host(boot: Boot) -> None:
    guest, mk = boot_host(boot)
    shell = mk.spawn(WEB, cmdline="acpi=force")
    log = guest.run_dir.console_log("kmsg1").read_text()
    assert "acpi=force" in shell.check("cat /proc/cmdline")
    assert "ACPI is the host's: acpi= on the command line ignored" in log
    tables = re.findall(r"ACPI: (?:RSDP|XSDT|RSDT|FACP|DSDT|FACS|APIC|HPET|MCFG|WAET)\b.*", log)
    assert tables == []
    assert shell.run("test -e /sys/firmware/acpi").status == 1
    assert "WARNING" not in log
    # Both kernels go on answering.
    time.sleep(2)
    assert guest.check("echo host-$((6 * 7))").strip() == "host-42"
    assert mk.ping(WEB.id).ok
    assert shell.check("echo inst-$((7 * 7))").strip() == "inst-49"


def test_an_instance_leaves_the_machine_check_banks_to_the_host(boot: Boot) -> None:
    """No polling and no CMCI there, and #MC stays on even with mce=off."""
    guest, mk = boot_host(boot)
    shell = mk.spawn(WEB, cmdline="mce=off")
    knobs = " ".join(
        f"/sys/devices/system/machinecheck/machinecheck0/{knob}"
        for knob in ("ignore_ce", "cmci_disabled")
    )
    assert guest.check(f"cat {knobs}").split() == ["0", "0"]
    assert shell.check(f"cat {knobs}").split() == ["1", "1"]
    log = guest.run_dir.console_log("kmsg1").read_text()
    assert "machine checks stay on in a multikernel instance" in log


def test_the_console_device_needs_cap_sys_admin_whatever_its_mode(boot: Boot) -> None:
    guest, mk = boot_host(boot)
    mk.spawn(WEB, console="ttyS1")
    device = f"/dev/mkcon{WEB.id}"
    guest.check(f"chmod 666 {device}")
    denied = guest.run(f"su nobody -s /bin/sh -c 'cat {device}' 2>&1")
    assert denied.status != 0
    assert "Operation not permitted" in denied.output, denied.output
    written = guest.run(f"su nobody -s /bin/sh -c 'echo id > {device}' 2>&1")
    assert "Operation not permitted" in written.output, written.output


def test_a_pool_placed_at_address_0_is_refused(boot: Boot) -> None:
    guest, mk = boot_host(boot, append="mkkernel_pool=256M@0")
    assert mk.pool() is None
    assert "not a 2 MiB aligned address above 0; no pool" in guest.check("dmesg")
    assert mk.upload(dtb.to_dtb([WEB])).errno == "ENOSPC"


def test_an_instance_scribbling_over_its_shared_area_cannot_take_the_host_down(
    boot: Boot,
) -> None:
    guest, mk = boot_host(boot)
    shell = mk.spawn(WEB)
    pool = mk.pool()
    assert pool is not None
    region = pool.child(WEB.name)
    assert region is not None
    # The shared area is the top 108 KiB of the instance's memory: its
    # console's rings and log, then the message rings (include/linux/multikernel.h).
    shared = region.end + 1 - SHARED_SIZE
    guest.check("dmesg -c > /dev/null")
    shell.check(
        f"( end=$(($(date +%s) + {SCRIBBLE_SECONDS})); while [ $(date +%s) -lt $end ]; do "
        f"dd if=/dev/urandom of=/dev/mem bs=4096 seek={shared // 4096} "
        f"count={SHARED_SIZE // 4096} conv=notrunc 2>/dev/null; done ) > /dev/null 2>&1 &"
    )
    deadline = time.monotonic() + SCRIBBLE_SECONDS
    while time.monotonic() < deadline:
        # Each may fail (the rings are garbage); none may hang or oops the host.
        guest.run(f"mkctl ping --id {WEB.id} --count 2 2>&1", timeout=60)
        guest.run(f"mkctl send --id {WEB.id} --count 2 2>&1", timeout=60)
        guest.run(f"timeout 2 cat /dev/mkcon{WEB.id} > /dev/null 2>&1", timeout=60)
    assert guest.check("echo host-$((6 * 7))").strip() == "host-42"
    log = [line for line in guest.check("dmesg").splitlines() if "multikernel:" in line]
    # Rate-limited: a few lines per kind of problem, not one per message.
    kinds = {re.sub(r"[0-9a-fx]+", "N", line.split("multikernel:", 1)[1]) for line in log}
    assert len(log) <= 12 * max(1, len(kinds)), log

    assert mk.halt(WEB.id, force=True).ok
    assert mk.unload(WEB.id).ok
    assert mk.remove(WEB.name).ok
    free = mk.pool()
    assert free is not None and free.children == ()


def test_a_cpu_that_does_not_stop_keeps_its_cpu_and_memory_from_everyone(boot: Boot) -> None:
    guest, mk = boot_host(boot)
    mk.spawn(WEB)
    # Like a CPU in VMX root operation or SMM: the next CPU stopped gets no INIT.
    guest.check(f"echo ignore > {DEBUGFS}/stop_inject")
    refused = mk.halt(WEB.id)
    assert refused.errno == "EIO", refused.output
    assert "instance web-server: CPU 1 did not stop" in guest.check("dmesg | tail -5")
    assert mk.status(WEB.name) == "failed"
    # Its CPU is not the host's: it cannot be brought online here.
    online = guest.run("echo 1 > /sys/devices/system/cpu/cpu1/online")
    assert online.status != 0
    assert guest.check("cat /sys/devices/system/cpu/online").strip() == "0"

    # Once the CPU does stop, everything comes back.
    assert mk.halt(WEB.id, force=True).ok
    assert mk.status(WEB.name) == "loading"
    mk.set_cpu_online(1, True)
    assert guest.check("cat /sys/devices/system/cpu/online").strip() == "0-1"


# A machine check QEMU raises on a vCPU: VAL|UC|EN|PCC in MCi_STATUS, RIPV|MCIP in MCG_STATUS.
MCE_UNCORRECTED = "0xb200000000000000 0x5 0 0"


def test_a_machine_check_on_a_cpu_an_instance_gave_back_does_not_reset_the_machine(
    boot: Boot,
) -> None:
    guest, mk = boot_host(boot)
    machine = qemu_only(guest).machine
    mk.spawn(WEB)
    assert mk.halt(WEB.id, force=True).ok
    # A CPU in wait-for-SIPI has CR4.MCE clear: a machine check shuts it down,
    # which on a real machine (and in QEMU) resets it.
    machine.hmp(f"mce 1 1 {MCE_UNCORRECTED}")
    time.sleep(1)
    assert machine.running(), "QEMU reset the machine: the parked CPU had machine checks off"
    assert guest.check("echo alive") == "alive\n"
    # The CPU comes back, and runs an instance again.
    mk.set_cpu_online(1, True)
    assert guest.check("cat /sys/devices/system/cpu/online").strip() == "0-1"
    mk.set_cpu_online(1, False)
    assert mk.start(WEB).check("echo again") == "again\n"


def test_an_instance_gets_whole_cores_unless_the_host_allows_split_ones(boot: Boot) -> None:
    guest, mk = boot_host(boot, smp=4, threads=2)
    # QEMU's threads=2: CPUs 0-1 are one core, 2-3 the other.
    siblings = "/sys/devices/system/cpu/cpu2/topology/thread_siblings_list"
    assert guest.check(f"cat {siblings}").strip() == "2-3"
    half = Instance("half", 1, (3,), 0x4000000)
    guest.check("dmesg -c > /dev/null")
    assert mk.upload(dtb.to_dtb([half])).errno == "EINVAL"
    assert "instance half: CPU 3 shares its core with CPU 2" in guest.check("dmesg")
    assert mk.instances() == []
    # Offline, a CPU has no siblings in sysfs; the kernel still knows its core.
    mk.set_cpu_online(2, False)
    assert mk.upload(dtb.to_dtb([half])).errno == "EINVAL"
    mk.set_cpu_online(2, True)

    whole = Instance("whole", 1, (2, 3), 0x10000000)
    shell = mk.spawn(whole)
    assert shell.check("nproc").strip() == "2"

    _, split_mk = boot_host(boot, smp=4, threads=2, append="mkkernel_pool=1G mkkernel_split_cores")
    assert split_mk.upload(dtb.to_dtb([half])).ok
    assert split_mk.status(half.name) == "ready"
