"""Spawned kernels: started on an offline CPU, confined to their instance, host unharmed."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from harness.core.errors import KernelCrash
from harness.multikernel import dtb
from harness.multikernel.dtb import Instance
from harness.multikernel.mk import Multikernel
from harness.target.base import Target
from harness.target.shell import Shell
from tests.conftest import apic_ids, kasan_shadow, qemu_only

pytestmark = pytest.mark.qemu
Boot = Callable[..., Target]

WEB = Instance("web-server", 1, (1,), 0x20000000)
DB = Instance("database", 2, (2, 3), 0x40000000)


def boot_host(boot: Boot) -> tuple[Target, Multikernel]:
    guest = boot(smp=4, memory="4G", append="mkkernel_pool=2G")
    mk = Multikernel(guest, guest.instances)
    assert mk.upload(dtb.to_dtb([WEB, DB])).ok
    return guest, mk


def mem_total_kib(shell: Shell) -> int:
    match = re.search(r"MemTotal:\s+(\d+) kB", shell.check("cat /proc/meminfo"))
    assert match
    return int(match.group(1))


def test_usage_instance_spawns_on_its_cpu_with_its_memory(boot: Boot) -> None:
    guest, mk = boot_host(boot)
    shell = mk.spawn(WEB)
    assert mk.status("web-server") == "active"
    assert shell.console.name == "ttyS1"

    assert shell.check("nproc").strip() == "1"
    assert shell.check("cat /sys/devices/system/cpu/online").strip() == "0"
    host_apic = apic_ids(guest)  # the host's online CPUs: 0, 2, 3
    assert 1 not in host_apic
    assert apic_ids(shell) == [1]

    total = mem_total_kib(shell) * 1024
    # All of the instance's memory but the kernel's own image and reservations
    # (and on the debug build KASAN's shadow, an eighth of it).
    reserved = 64 * 2**20 + kasan_shadow(guest.images, WEB.memory)
    assert WEB.memory - reserved < total <= WEB.memory

    log = shell.check("dmesg")
    assert "started by a multikernel host" in log
    assert not re.search(r"ACPI: (RSDP|XSDT|RSDT|FACP|DSDT|APIC|HPET)", log), log
    # Only its own region: RAM, and its shared area at its top as reserved
    # (the console's rings and log, 100 KiB, and the message rings, 8 KiB);
    # and below 1 MiB the area it would start CPUs an overlay gives it from.
    e820 = re.findall(r"BIOS-e820: \[mem (0x[0-9a-f]+)-(0x[0-9a-f]+)\] (\w+)", log)
    low = [entry for entry in e820 if int(entry[1], 16) < 2**20]
    assert [kind for _, _, kind in low] == ["usable"], e820
    e820 = [entry for entry in e820 if entry not in low]
    assert [kind for _, _, kind in e820] == ["usable", "reserved"], e820
    assert int(e820[0][1], 16) + 1 == int(e820[1][0], 16)
    assert int(e820[1][1], 16) - int(e820[1][0], 16) + 1 == (100 + 8) * 1024
    assert int(e820[1][1], 16) - int(e820[0][0], 16) + 1 == WEB.memory


def test_host_stays_healthy_while_the_instance_runs(boot: Boot) -> None:
    guest, mk = boot_host(boot)
    shell = mk.spawn(WEB)
    assert guest.check("cat /sys/devices/system/cpu/online").strip() == "0,2-3"
    assert guest.check("echo host-$((40 + 2))").strip() == "host-42"
    assert shell.check("echo instance-$((40 + 2))").strip() == "instance-42"
    assert guest.check("sha256sum /boot/bzImage").split()[0]
    # The host cannot take the CPU back while the instance runs on it.
    back = guest.run("echo 1 > /sys/devices/system/cpu/cpu1/online")
    assert back.status != 0
    assert qemu_only(guest).machine is not None
    qemu_only(guest).machine.health()  # no crash signature on any console
    for name in ("ttyS0", "ttyS1", "kmsg", "kmsg1"):
        assert qemu_only(guest).machine.consoles[name].crash is None


def test_two_instances_run_at_once_on_their_own_consoles(boot: Boot) -> None:
    guest, mk = boot_host(boot)
    web = mk.spawn(WEB)
    db = mk.spawn(DB)
    assert (web.console.name, db.console.name) == ("ttyS1", "ttyS2")
    assert apic_ids(web) == [1]
    assert apic_ids(db) == [2, 3]  # it starts on CPU 2 and brings up CPU 3
    assert web.check("echo web-$((1 + 1))").strip() == "web-2"
    assert db.check("echo db-$((2 + 2))").strip() == "db-4"
    assert mk.status("web-server") == mk.status("database") == "active"
    assert guest.check("cat /sys/devices/system/cpu/online").strip() == "0"
    assert "db-4" in guest.run_dir.console_log("ttyS2").read_text()
    assert "db-4" not in guest.run_dir.console_log("ttyS1").read_text()


def test_panic_in_an_instance_leaves_the_host_running(boot: Boot) -> None:
    guest, mk = boot_host(boot)
    shell = mk.spawn(WEB)
    with pytest.raises(KernelCrash) as info:
        shell.run("echo c > /proc/sysrq-trigger", timeout=60)
    assert info.value.console == "kmsg1"  # the instance's own kernel log
    assert info.value.kind == "panic"
    assert "kmsg1 (kernel log of the ttyS1 instance)" in str(info.value)
    assert shell.take_crash() is not None
    assert qemu_only(guest).machine is not None and qemu_only(guest).machine.running()
    assert guest.check("echo alive-$((6 * 7))").strip() == "alive-42"
    # Its panic notice reached the host.
    assert mk.wait_status("web-server", "failed").ok


def test_three_instances_use_the_three_instance_consoles(boot: Boot) -> None:
    guest = boot(smp=4, memory="4G", append="mkkernel_pool=2G")
    mk = Multikernel(guest, guest.instances)
    shells = [mk.spawn(Instance(f"small{cpu}", cpu, (cpu,), 0x10000000)) for cpu in (1, 2, 3)]
    assert [s.console.name for s in shells] == ["ttyS1", "ttyS2", "ttyS3"]
    for cpu, shell in zip((1, 2, 3), shells, strict=True):
        assert apic_ids(shell) == [cpu]
        assert shell.check(f"echo on-$(({cpu} * 10))").strip() == f"on-{cpu * 10}"
    assert guest.check("cat /sys/devices/system/cpu/online").strip() == "0"
    assert qemu_only(guest).machine is not None
    qemu_only(guest).machine.health()


def test_instance_starts_on_a_host_with_5_level_paging(boot: Boot) -> None:
    # The kernel clears the la57 flag unless it pages with five levels.
    guest = boot(smp=2, memory="2G", append="mkkernel_pool=1G")
    if "la57" not in guest.check("grep -m1 ^flags /proc/cpuinfo").split():
        pytest.skip("this CPU has no LA57: the host pages with four levels")
    shell = Multikernel(guest, guest.instances).spawn(WEB)
    assert "la57" in shell.check("grep -m1 ^flags /proc/cpuinfo").split()
    assert shell.check("echo child-$((6 * 7))").strip() == "child-42"
