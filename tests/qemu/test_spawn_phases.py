"""Where a spawn's time goes (the kernels' TSC stamps), and the segment check at start."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from harness.bench import measure
from harness.multikernel import dtb, phases
from harness.multikernel.dtb import Instance
from harness.multikernel.mk import Multikernel
from harness.target.base import Target

pytestmark = pytest.mark.qemu
Boot = Callable[..., Target]

WEB = Instance("web-server", 1, (1,), 0x20000000)
_SEGMENT = re.compile(r"segment\[(\d+)\]: buf=\S+ bufsz=0x([0-9a-f]+) mem=0x([0-9a-f]+) memsz=0x")


def test_spawn_breakdown_is_ordered_and_adds_up_to_the_total(boot: Boot) -> None:
    guest = boot(smp=4, memory="2G", append="mkkernel_pool=1G")
    sample = measure.measure_spawn(guest, WEB)
    for result, steps in (
        (sample.host_boot, phases.BOOT_PHASES),
        (sample.spawn, phases.SPAWN_PHASES),
    ):
        # breakdown() refused stamps out of order; every stamped phase is there.
        assert list(result.phases) == [name for name, _, _ in steps] + [phases.REST]
        stamped = sum(v for name, v in result.phases.items() if name != phases.REST)
        assert 0 < stamped <= result.total * 1.02, result
        assert sum(result.phases.values()) == pytest.approx(result.total)
    # The instance's kernel ran: its stamps come after the host's exec call.
    assert sample.spawn.phases["kernel entry to /init"] > 0
    assert sample.accel in {"tcg", "kvm"}


def _kernel_segment(guest: Target) -> tuple[int, int]:
    """(address, bytes loaded) of the largest segment of the last image loaded with debug."""
    rows = [m.groups() for m in _SEGMENT.finditer(guest.check("dmesg"))]
    assert rows, "mkctl load --debug logged no segment"
    _, size, addr = max(rows, key=lambda row: int(row[1], 16))
    return int(addr, 16), int(size, 16)


def test_a_segment_changed_after_the_load_is_refused_at_start(boot: Boot) -> None:
    guest = boot(smp=2, memory="2G", append="mkkernel_pool=1G")
    mk = Multikernel(guest, guest.instances)
    Multikernel.must(mk.upload(dtb.to_dtb([WEB])), "upload")
    guest.check("dmesg -c > /dev/null")
    Multikernel.must(mk.load(WEB.id, debug=True), "load")
    addr, size = _kernel_segment(guest)
    before = mk.status(WEB.name)
    # A stray write into the middle of the kernel segment, through /dev/mem.
    offset = addr + size // 2
    guest.check(
        f"printf 'MKHSTRAY' | dd of=/dev/mem bs=1 seek={offset} count=8 conv=notrunc 2>/dev/null"
    )
    assert guest.check(f"dd if=/dev/mem bs=1 skip={offset} count=8 2>/dev/null") == "MKHSTRAY"
    mk.set_cpu_online(1, False)
    for _ in range(2):  # refused again: nothing repairs the segment behind the user's back
        outcome = mk.exec(WEB.id)
        assert outcome.errno == "EBADMSG", outcome.output
        assert mk.status(WEB.name) == before
    log = guest.check("dmesg")
    refusal = rf"web-server: segment \d+ at {addr:#x} \(0x[0-9a-f]+ bytes\) changed since the load"
    assert re.search(refusal, log), log
    assert "web-server: started" not in log
    # Loaded again, the same instance starts and answers.
    Multikernel.must(mk.unload(WEB.id), "unload")
    shell = mk.spawn(WEB)
    assert shell.check("echo up") == "up\n"


_NEEDS = re.compile(
    r"instance tiny: (\d+) KiB cannot hold a kernel of \d+ KiB .* it needs (\d+) KiB"
)


def test_an_instance_too_small_is_refused_at_load_and_the_minimum_boots(boot: Boot) -> None:
    guest = boot(smp=3, memory="2G", append="mkkernel_pool=1G")
    mk = Multikernel(guest, guest.instances)
    tiny = Instance("tiny", 2, (2,), 16 << 20)
    Multikernel.must(mk.upload(dtb.to_dtb([tiny])), "upload")
    guest.check("dmesg -c > /dev/null")
    refused = mk.load(tiny.id)
    assert refused.errno == "E2BIG", refused.output
    log = guest.check("dmesg")
    found = _NEEDS.search(log)
    assert found, log
    assert mk.status(tiny.name) == "ready"  # nothing loaded
    # The least the kernel said it needs, in whole MiB, starts and answers.
    least = Instance("least", 1, (1,), -(-int(found.group(2)) // 1024) << 20)
    Multikernel.must(mk.upload(dtb.to_dtb([least])), "upload")
    shell = mk.spawn(least)
    assert shell.check("echo $((6 * 7))") == "42\n"
    assert shell.check("echo data > /tmp/f && cat /tmp/f") == "data\n"
