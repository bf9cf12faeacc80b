"""What the series does when starting an instance goes wrong, or is asked of the wrong kernel.

The debugfs knobs (CONFIG_MULTIKERNEL_DEBUG) make the failures QEMU does not
produce on its own: a CPU that never acknowledges its start, an image whose
SETUP_MULTIKERNEL its kernel does not understand.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from harness.build.initramfs import BOOT_INITRAMFS, BOOT_KERNEL
from harness.multikernel import dtb
from harness.multikernel.dtb import Instance
from harness.multikernel.mk import ROOT, Multikernel, errno_name
from harness.target import uarts
from harness.target.base import Target
from tests.conftest import qemu_only

pytestmark = pytest.mark.qemu
Boot = Callable[..., Target]

WEB = Instance("web-server", 1, (1,), 0x10000000)
DEBUGFS = "/sys/kernel/debug/multikernel"
# xloadflags is the u16 at 0x236 of a bzImage; XLF_MULTIKERNEL is bit 8.
XLF_MULTIKERNEL_BYTE = 0x237


def dmesg_lines(guest: Target, text: str) -> list[str]:
    return [line for line in guest.check("dmesg").splitlines() if text in line]


def test_cpu_that_never_acknowledges_is_stopped_and_rmdir_frees_everything(boot: Boot) -> None:
    guest = boot(smp=2, memory="2G", append="mkkernel_pool=512M")
    mk = Multikernel(guest, guest.instances)
    pool = mk.pool()
    assert pool is not None
    free_before = pool.free
    assert mk.upload(dtb.to_dtb([WEB])).ok
    assert mk.load(WEB.id).ok
    mk.set_cpu_online(1, False)

    guest.check(f"echo no-ack > {DEBUGFS}/start_inject")
    started = mk.exec(WEB.id)
    assert started.errno == "ETIMEDOUT", started.output
    assert mk.status(WEB.name) == "failed"
    assert dmesg_lines(guest, "instance web-server: CPU 1 did not start; stopped it")
    assert guest.check(f"cat {DEBUGFS}/start_inject").strip() == "none"
    # The stopped CPU stays the instance's: the host cannot take it back yet.
    refused = guest.run("echo 1 > /sys/devices/system/cpu/cpu1/online")
    assert refused.status != 0
    # Its image is still listed until the instance goes.
    assert [k.mk_id for k in mk.kimages()] == [WEB.id]

    assert mk.remove(WEB.name).ok
    assert mk.instances() == []
    assert mk.kimages() == []
    after = mk.pool()
    assert after is not None and after.free == free_before
    assert after.child(WEB.name) is None
    # The CPU was stopped with INIT, so the host brings it up as any other.
    mk.set_cpu_online(1, True)
    assert guest.check("cat /sys/devices/system/cpu/online").strip() == "0-1"
    assert guest.check("nproc").strip() == "2"


def test_unloading_a_failed_instance_gives_its_cpu_back(boot: Boot) -> None:
    guest = boot(smp=2, memory="2G", append="mkkernel_pool=512M")
    mk = Multikernel(guest, guest.instances)
    assert mk.upload(dtb.to_dtb([WEB])).ok
    assert mk.load(WEB.id).ok
    mk.set_cpu_online(1, False)
    guest.check(f"echo no-ack > {DEBUGFS}/start_inject")
    assert mk.exec(WEB.id).errno == "ETIMEDOUT"

    assert mk.unload(WEB.id).ok
    assert mk.status(WEB.name) == "ready"
    mk.set_cpu_online(1, True)
    assert guest.check("nproc").strip() == "2"


def test_kernel_given_an_unknown_setup_version_halts_instead_of_booting(boot: Boot) -> None:
    guest = boot(smp=2, memory="2G", append="mkkernel_pool=512M")
    mk = Multikernel(guest, guest.instances)
    machine = qemu_only(guest).machine
    assert machine is not None
    console = mk.free_console()
    log = machine.consoles[uarts.log_stream(console)]
    assert mk.upload(dtb.to_dtb([WEB])).ok
    guest.check(f"echo version > {DEBUGFS}/setup_inject")
    params = f"{uarts.kernel_params(console)} mkkernel_uart={console}"
    assert mk.load(WEB.id, cmdline=params).ok
    assert guest.check(f"cat {DEBUGFS}/setup_inject").strip() == "none"
    mk.set_cpu_online(1, False)

    halted = log.expect_text("not understood; halting this CPU")
    assert mk.exec(WEB.id).ok  # the CPU did reach the image
    log.wait_event(halted, 120, "the instance kernel's refusal", machine.health)
    assert re.search(r"SETUP_MULTIKERNEL \(version 0, \d+ bytes\) not understood", log.tail())
    # It stopped there: it never set up its timers, let alone started init.
    log.drain(3)
    tail = log.tail()
    assert "multikernel: started by a multikernel host" not in tail
    assert "Run /init" not in tail
    assert guest.check("echo host-$((6 * 7))").strip() == "host-42"


def test_kernel_without_multikernel_support_is_refused_at_load(boot: Boot) -> None:
    guest = boot(smp=2, memory="2G", append="mkkernel_pool=512M")
    mk = Multikernel(guest, guest.instances)
    assert mk.upload(dtb.to_dtb([WEB])).ok
    flag = guest.check(
        f"dd if={BOOT_KERNEL} bs=1 skip={XLF_MULTIKERNEL_BYTE} count=1 2>/dev/null | od -An -tx1"
    )
    assert flag.split() == ["01"]  # our kernel says it can run in an instance
    # The same kernel with the flag cleared stands for one built without the series.
    guest.check(
        f"cp {BOOT_KERNEL} /tmp/old && printf '\\000' | "
        f"dd of=/tmp/old bs=1 seek={XLF_MULTIKERNEL_BYTE} conv=notrunc 2>/dev/null"
    )
    refused = mk.load(WEB.id, kernel="/tmp/old")
    assert refused.errno == "ENOEXEC", refused.output
    assert dmesg_lines(guest, "this kernel cannot run in an instance")
    assert mk.status(WEB.name) == "ready"
    assert mk.kimages() == []
    assert mk.load(WEB.id).ok


def test_kexec_is_refused_inside_an_instance_and_works_on_the_host(boot: Boot) -> None:
    guest = boot(smp=2, memory="2G", append="mkkernel_pool=512M")
    mk = Multikernel(guest, guest.instances)
    shell = mk.spawn(WEB)
    # (the child has no bzImage; the refusal comes before the file is read)
    inside = shell.run("mkctl load --id 0 --kernel /bin/busybox 2>&1")
    assert errno_name(inside.output) == "EPERM", inside.output
    assert "kexec is not available in a multikernel instance" in shell.check("dmesg")

    # The host's own kexec image is unaffected by the instances.
    assert mk.load(0, kernel=BOOT_KERNEL, initrd=BOOT_INITRAMFS).ok
    assert sorted((k.mk_id, k.type) for k in mk.kimages()) == [
        (0, "default"),
        (WEB.id, "multikernel"),
    ]
    assert mk.unload(0).ok
    assert [k.mk_id for k in mk.kimages()] == [WEB.id]


def test_pool_memory_is_cleared_before_the_next_instance_gets_it(boot: Boot) -> None:
    guest = boot(smp=2, memory="2G", append="mkkernel_pool=512M")
    mk = Multikernel(guest, guest.instances)
    assert mk.upload(dtb.to_dtb([WEB])).ok
    guest.check("dmesg -c > /dev/null")
    assert mk.load(WEB.id, debug=True).ok
    # The kernel segment: the one the bzImage was copied to.
    segments = re.findall(
        r"segment\[\d+\]: buf=\S+ bufsz=(0x[0-9a-f]+) mem=(0x[0-9a-f]+)", guest.check("dmesg")
    )
    start = max(((int(size, 16), int(mem, 16)) for size, mem in segments))[1]

    def nonzero_bytes() -> int:
        return int(
            guest.check(
                f"dd if=/dev/mem bs=4096 skip={start // 4096} count=16 2>/dev/null"
                " | tr -d '\\000' | wc -c"
            )
        )

    assert nonzero_bytes() > 0  # the kernel image is there
    assert mk.unload(WEB.id).ok
    assert mk.remove(WEB.name).ok
    again = Instance("next", 2, (1,), WEB.memory)
    assert mk.upload(dtb.to_dtb([again])).ok
    pool = mk.pool()
    region = pool.child("next") if pool else None
    assert region is not None and region.contains(start, 16 * 4096)
    assert nonzero_bytes() == 0


def test_removed_name_is_free_at_once_for_a_new_instance(boot: Boot) -> None:
    guest = boot(smp=2, memory="1G", append="mkkernel_pool=256M")
    mk = Multikernel(guest, guest.instances)
    free = mk.pool()
    guest.write_file("/tmp/race.dtb", dtb.to_dtb([Instance("race", 3, (1,), 0x200000)]))
    guest.check("dmesg -c > /dev/null")
    # Create and remove the same instance concurrently, again and again.
    guest.check(
        "for i in $(seq 200); do "
        f"dd if=/tmp/race.dtb of={ROOT}/device_tree bs=1M 2>/dev/null & "
        f"rmdir {ROOT}/instances/race 2>/dev/null; wait; done; "
        f"rmdir {ROOT}/instances/race 2>/dev/null; true",
        timeout=300,
    )
    assert dmesg_lines(guest, "cannot create its directory") == []
    assert mk.instances() == []
    assert free is not None and mk.pool() == free


def test_cpu_online_and_exec_racing_never_both_win(boot: Boot) -> None:
    guest = boot(smp=2, memory="2G", append="mkkernel_pool=512M")
    mk = Multikernel(guest, guest.instances)
    assert mk.upload(dtb.to_dtb([WEB])).ok
    # With its log port and its UART: a kernel without one has no console for its
    # shell and powers itself off right after it is up (and says why it did not).
    assert mk.load(WEB.id, cmdline=f"{uarts.kernel_params('ttyS1')} mkkernel_uart=ttyS1").ok
    online = "/sys/devices/system/cpu/cpu1/online"
    for _ in range(20):
        mk.set_cpu_online(1, False)
        outcome = guest.check(
            f"(echo 1 > {online}) 2>/dev/null & "
            f"mkctl exec --id {WEB.id} 2>/dev/null; e=$?; wait $!; echo $? $e"
        ).split()
        onlined, started = (code == "0" for code in outcome)
        assert onlined != started, outcome
        if started:
            assert mk.wait_status(WEB.name, "active", timeout=120).ok
            assert guest.check(f"cat {online}").strip() == "0"
            break
        assert mk.status(WEB.name) == "loading"
        assert guest.check(f"cat {online}").strip() == "1"
