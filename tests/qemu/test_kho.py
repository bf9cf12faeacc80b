"""The KHO handover: a spawned kernel restores its instance, or boots plain on bad data."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest

from harness.multikernel import dtb
from harness.multikernel.dtb import Instance
from harness.multikernel.mk import Multikernel, errno_name
from harness.target.base import Target
from harness.target.protocol import CommandProtocol
from tests.conftest import qemu_only

pytestmark = pytest.mark.qemu
Boot = Callable[..., Target]

WEB = Instance("web-server", 1, (1,), 0x20000000)
DB = Instance("database", 2, (2, 3), 0x40000000)
KNOB = "/sys/kernel/debug/multikernel/kho_inject"
# What the child says for each corruption the host's knob makes.
INJECTED = {
    "magic": "bad FDT magic",
    "compatible": 'root is not compatible with "multikernel-v1"',
    "oversize": "its FDT is larger than its page",
    "scratch": "it has a KHO scratch area",
    "dtb": "instance web-server: id 0 outside 1..2047",
}


def iomem_region(shell: CommandProtocol, name: str) -> tuple[int, int]:
    found = re.findall(
        rf"^\s*([0-9a-f]+)-([0-9a-f]+) : {re.escape(name)}$", shell.check("cat /proc/iomem"), re.M
    )
    assert len(found) == 1, f"{name} in /proc/iomem: {found}"
    return int(found[0][0], 16), int(found[0][1], 16)


def handover_lines(shell: CommandProtocol) -> list[str]:
    return [line for line in shell.check("dmesg").splitlines() if "handover" in line]


def test_spawned_kernel_restores_its_instance_as_the_host_shows_it(boot: Boot) -> None:
    guest = boot(smp=4, memory="4G", append="mkkernel_pool=2G")
    mk = Multikernel(guest, guest.instances)
    assert mk.upload(dtb.to_dtb([WEB, DB])).ok
    assert handover_lines(guest) == []  # booted without handover data: a plain host

    shell = mk.spawn(WEB)
    host = mk.view(WEB.name)
    child = mk.restored(shell)
    assert list(child) == [WEB.name]  # its own instance, not the host's others
    assert child[WEB.name].id == host.id == WEB.id
    assert child[WEB.name].device_tree_source == host.device_tree_source
    assert child[WEB.name].status == "ready"
    assert host.status == "active"

    # Its memory is the instance's, under the instance's name, in both kernels.
    start, end = iomem_region(shell, WEB.name)
    assert (start, end) == iomem_region(guest, WEB.name)
    assert end - start + 1 == WEB.memory
    # It is the kernel's own instance: it cannot be removed there (and an
    # instance kernel loads nothing at all: test_failures.py).
    removed = shell.run(f"rmdir /sys/fs/multikernel/instances/{WEB.name} 2>&1")
    assert errno_name(removed.output) == "EBUSY", removed.output
    assert mk.restored(shell) == child
    lines = handover_lines(shell)
    assert len(lines) == 1 and "instance web-server: restored from the handover" in lines[0]


def test_instance_clock_is_the_hosts_at_start_not_at_load(boot: Boot) -> None:
    guest = boot(smp=2, memory="2G", append="mkkernel_pool=1G")
    mk = Multikernel(guest, guest.instances)
    shell = mk.spawn(WEB, pause=30)
    before = int(guest.check("date +%s"))
    child = int(shell.check("date +%s"))
    after = int(guest.check("date +%s"))
    assert before - 2 <= child <= after + 2, (before, child, after)


@pytest.mark.parametrize("mode", sorted(INJECTED))
def test_corrupt_handover_is_refused_with_one_line_and_the_child_boots(
    boot: Boot, mode: str
) -> None:
    guest = boot(smp=2, memory="2G", append="mkkernel_pool=1G")
    mk = Multikernel(guest, guest.instances)
    guest.check(f"echo {mode} > {KNOB}")
    assert guest.check(f"cat {KNOB}").strip() == mode

    shell = mk.spawn(WEB)  # it boots to its shell all the same
    assert mk.restored(shell) == {}
    lines = handover_lines(shell)
    assert len(lines) == 1, lines
    assert f"multikernel: handover ignored: {INJECTED[mode]}" in lines[0]

    # The host: one line for the corruption, the knob back to none, unharmed.
    assert f"instance web-server: handover corrupted ({mode})" in guest.check("dmesg")
    assert guest.check(f"cat {KNOB}").strip() == "none"
    assert guest.check("echo host-$((6 * 7))").strip() == "host-42"
    assert qemu_only(guest).machine is not None
    qemu_only(guest).machine.health()


def test_kho_inject_refuses_an_unknown_mode(boot: Boot) -> None:
    guest = boot(smp=2, memory="1G")
    result = guest.run(f"echo bogus > {KNOB}")
    assert result.status != 0 and "Invalid argument" in result.output
    assert guest.check(f"cat {KNOB}").strip() == "none"


def test_handover_as_the_rfcs_patch_16_writes_it_restores_the_instance(boot: Boot) -> None:
    guest = boot(smp=2, memory="2G", append="mkkernel_pool=1G")
    mk = Multikernel(guest, guest.instances)
    # No msg-area, host-apic-id or console-area: what patch 16 and the
    # interface sheet's section 6 describe.
    guest.check(f"echo seed > {KNOB}")
    shell = mk.spawn(WEB)
    child = mk.restored(shell)
    assert list(child) == [WEB.name]
    assert child[WEB.name].id == WEB.id
    assert child[WEB.name].device_tree_source == mk.view(WEB.name).device_tree_source
    start, end = iomem_region(shell, WEB.name)
    assert (start, end) == iomem_region(guest, WEB.name)
    log = shell.check("dmesg")
    assert "handover ignored" not in log
    assert "restored from a handover without a message area: no messages to the host" in log
    # Without rings it cannot be asked to shut down; a forced halt stops it.
    assert mk.halt(WEB.id, force=True).ok
    assert mk.status(WEB.name) == "loading"


def test_an_instance_handed_over_as_patch_16_writes_it_is_active_once_it_booted(
    boot: Boot,
) -> None:
    """Interface sheet section 2: boot on its CPU -> active."""
    guest = boot(smp=2, memory="2G", append="mkkernel_pool=1G multikernel.boot_timeout_ms=2000")
    mk = Multikernel(guest, guest.instances)
    guest.check(f"echo seed > {KNOB}")
    shell = mk.spawn(WEB)
    assert mk.status(WEB.name) == "active"
    assert "handed over without message rings: active, not followed" in guest.check("dmesg")
    # Its kernel never reports, and is not taken for one that failed to boot.
    time.sleep(4)
    assert mk.status(WEB.name) == "active"
    assert shell.check("echo alive") == "alive\n"
