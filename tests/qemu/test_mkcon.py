"""Instances without a UART: their console over shared memory, /dev/mkcon<id> in the host.

Each instance here boots with `console=mkcon0` and no UART on its command
line; the harness reaches it through the host's SSH connection.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import replace

import pytest

from harness.bench import density
from harness.build.images import Images
from harness.core.errors import GuestTimeout, KernelCrash
from harness.multikernel import dtb, mkcon
from harness.multikernel.dtb import Instance
from harness.multikernel.mk import MKCON, Multikernel
from harness.target.base import Target
from tests.conftest import gcov_counters, kasan_shadow

pytestmark = [
    pytest.mark.qemu,
    pytest.mark.qemu_guest("these boot a QEMU guest with more CPUs than a lab machine may have"),
]
Boot = Callable[..., Target]

SMALL = Instance("small", 1, (1,), 64 << 20)
# The debug build (KASAN's shadow, lockdep) needs far more than the smallest.
DEBUG_MEMORY = 256 << 20


def sized(images: Images, memory: int) -> int:
    """`memory`, or on the debug and coverage builds what their kernels need."""
    if kasan_shadow(images, 8):
        return max(memory, DEBUG_MEMORY)
    return memory + gcov_counters(images)


@pytest.fixture
def small(guest_images: Images) -> Instance:
    return replace(SMALL, memory=sized(guest_images, SMALL.memory))


DIRECT = "/sys/kernel/debug/provoke-crash/DIRECT"


def boot_host(boot: Boot, instances: list[Instance], smp: int = 4) -> tuple[Target, Multikernel]:
    guest = boot(smp=smp, memory="2G", append="mkkernel_pool=1G", transport="ssh")
    mk = Multikernel(guest, guest.instances)
    assert mk.upload(dtb.to_dtb(instances)).ok
    return guest, mk


def device_present(guest: Target, mk_id: int) -> bool:
    return guest.run(f"test -c /dev/mkcon{mk_id}").status == 0


def test_instance_without_uart_is_reached_through_its_host(boot: Boot, small: Instance) -> None:
    guest, mk = boot_host(boot, [small])
    shell = mk.spawn(small, console=MKCON)
    assert shell.console.name == "mkcon1"

    # The instance has no UART: mkcon0 is its only console and its shell's tty.
    assert shell.check("cat /proc/cmdline").split() == mkcon.KERNEL_PARAMS.split()
    assert re.findall(r"^(\S+)", shell.check("cat /proc/consoles"), re.M) == ["mkcon0"]
    assert shell.check("readlink /proc/self/fd/0").strip() == "/dev/mkcon0"
    # The 8250 driver is built in, but finds no port it may drive.
    assert "uart:16550" not in shell.check("cat /proc/tty/driver/serial")

    result = shell.run("echo to-stdout; echo to-stderr >&2; exit 3")
    assert result.status == 3
    assert result.output == "to-stdout\nto-stderr\n"
    data = bytes(range(256)) * 8
    shell.write_file("/tmp/blob", data)
    assert shell.check("md5sum /tmp/blob").split()[0] == hashlib.md5(data).hexdigest()

    # The host: one root-only character device, nothing dropped.
    listing = guest.check("ls -l /dev/mkcon1")
    assert listing.startswith("crw-------"), listing
    assert guest.check("cat /sys/class/mkcon/mkcon1/dropped").strip() == "0"
    # The instance's whole kernel log went there, from its first line.
    log = guest.run_dir.console_log("mkcon1").read_text()
    assert log.startswith("[    0.000000] Linux version"), log[:200]
    assert f"Command line: {mkcon.KERNEL_PARAMS}" in log
    # The boot console hands over to the kernel console without repeating a line.
    assert log.count("Linux version") == 1
    assert log.count("Run /init as init process") == 1


def test_a_kernel_that_dies_in_setup_arch_shows_why_on_mkcon(boot: Boot, small: Instance) -> None:
    guest, mk = boot_host(boot, [small])
    # mem= below the instance's memory: the kernel panics while it parses
    # its early parameters, long before console_initcall.
    with pytest.raises(KernelCrash) as info:
        mk.spawn(small, console=MKCON, cmdline="mem=8M", timeout=60)
    crash = info.value
    assert crash.console == "mkcon1" and crash.kind == "panic"
    log = guest.run_dir.console_log("mkcon1").read_text()
    assert log.startswith("[    0.000000] Linux version"), log[:200]
    # In setup_arch(), whose frame the panic's backtrace shows: what it
    # runs out of first depends on what lies below 1 MiB for it.
    assert "setup_arch" in log, log[-2000:]
    guest.instances.relayed["mkcon1"].take_crash(watch=False)
    # Its CPU comes back by force; the console goes with it.
    assert mk.halt(small.id, force=True).ok
    assert not device_present(guest, small.id)


@pytest.mark.skip(
    reason="not implemented: mkcon over the console transport needs the host's one serial "
    "line multiplexed between its shell and the instances' consoles; only SSH carries it"
)
def test_mkcon_over_the_console_transport(boot: Boot, small: Instance) -> None:
    """The issue asks for the host's command channel, console or SSH: the console half."""
    guest = boot(smp=2, memory="2G", append="mkkernel_pool=1G", transport="console")
    shell = Multikernel(guest, guest.instances).spawn(small, console=MKCON)
    assert shell.check("echo $((6 * 7))-over-the-console") == "42-over-the-console\n"


@pytest.mark.parametrize("action", ["BUG", "PANIC"])
def test_a_crash_in_an_instance_is_caught_on_its_mkcon(
    boot: Boot, small: Instance, action: str
) -> None:
    guest, mk = boot_host(boot, [small])
    shell = mk.spawn(small, console=MKCON)
    with pytest.raises(KernelCrash) as info:
        shell.run(f"echo {action} > {DIRECT} &")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            guest.health()
            time.sleep(0.2)
    crash = info.value
    assert crash.console == "mkcon1"
    assert crash.kind == ("panic" if action == "PANIC" else "bug"), crash
    assert "mkcon1 (console over shared memory of instance 1)" in str(crash)
    assert "lkdtm" in crash.excerpt
    assert guest.run_dir.file("crash-mkcon1.txt").exists()
    shell.take_crash(watch=False)
    if action == "PANIC":
        # The host saw it fail; its console stays until the instance is removed.
        assert mk.wait_status(small.name, "failed").ok
        assert device_present(guest, small.id)
        assert mk.remove(small.name).ok
        assert not device_present(guest, small.id)
    assert guest.check("echo host-alive") == "host-alive\n"


def test_the_device_goes_with_a_halt_and_comes_back_with_a_start(
    boot: Boot, small: Instance
) -> None:
    guest, mk = boot_host(boot, [small])
    shell = mk.spawn(small, console=MKCON)
    assert device_present(guest, small.id)
    assert mk.halt(small.id).ok
    assert not device_present(guest, small.id)
    # The relay saw the end of the stream.
    deadline = time.monotonic() + 10
    while not shell.console.closed and time.monotonic() < deadline:
        time.sleep(0.1)
    assert shell.console.closed
    assert "no such" in guest.run("mkctl console --id 1 --timeout 0").output.lower()

    again = mk.start(small)
    assert again.check("echo second-run") == "second-run\n"
    assert device_present(guest, small.id)


def test_a_silent_reader_does_not_stall_a_printing_instance(boot: Boot, small: Instance) -> None:
    guest, mk = boot_host(boot, [small])
    shell = mk.spawn(small, console=MKCON)
    size = 2 << 20  # 64 times the ring
    # Once the harness has let go, print without pause, then tell the host.
    shell.check(
        f"(sleep 3; head -c {size} /dev/zero | tr '\\0' x > /dev/console; "
        "mkctl send --id 0) > /dev/null 2>&1 &"
    )
    shell.console.close()
    guest.instances.release(shell)
    # Its relay ends with the channel.
    guest.check("for i in $(seq 100); do pidof mkctl >/dev/null || exit 0; sleep 0.1; done; exit 1")
    # A reader that holds the device and never reads.
    guest.check("sleep 600 < /dev/mkcon1 > /dev/null 2>&1 & echo $! > /tmp/silent")
    assert "busy" in guest.run("cat /dev/mkcon1").output.lower()  # one reader at a time
    got = guest.run("mkctl recv --count 1 --timeout 90", timeout=120)
    assert got.status == 0, got.output
    dropped = int(guest.check("cat /sys/class/mkcon/mkcon1/dropped"))
    assert dropped >= size - (64 << 10), dropped

    guest.check("kill $(cat /tmp/silent)")
    time.sleep(0.5)
    shell = mkcon.attach(guest.instances, small.id)
    shell.sync()
    assert shell.check("echo still-here") == "still-here\n"
    log = guest.run_dir.console_log("mkcon1").read_text()
    lost = re.search(r"\[mkcon: (\d+) bytes lost\]", log)
    assert lost and int(lost.group(1)) >= size - (64 << 10), log[-2000:]
    # What the reader got after the note is the newest output: the end of the x's.
    assert log[lost.end() :].lstrip().startswith("x" * 100)


def test_seven_instances_on_eight_cpus_each_answer_on_their_console(
    boot: Boot, guest_images: Images
) -> None:
    # Each at the smallest memory the README gives (`mkh bench density` measures it).
    memory = sized(guest_images, density.DEFAULT_MEMORY)
    instances = [Instance(f"inst{n}", n, (n,), memory) for n in range(1, 8)]
    pool = 7 * (memory + (2 << 20)) // (1 << 20)
    append = f"mkkernel_pool={pool}M"
    if kasan_shadow(guest_images, 8):
        # The debug build's host takes its eight CPUs through stop_machine()
        # slowly under TCG: its soft-lockup detector must not take that for
        # a lockup (it still reports one of a minute).
        append += " watchdog_thresh=30"
    guest = boot(smp=8, memory=f"{pool + 1024}M", append=append, transport="ssh")
    mk = Multikernel(guest, guest.instances)
    assert mk.upload(dtb.to_dtb(instances)).ok
    shells = {inst.name: mk.spawn(inst, console=MKCON) for inst in instances}

    assert guest.check("cat /sys/devices/system/cpu/online").strip() == "0"
    for inst in instances:
        assert mk.status(inst.name) == "active"
        token = f"{inst.name}-says-{inst.id * 7919}"
        shell = shells[inst.name]
        answer = shell.check(f"echo {inst.name}-says-$(({inst.id} * 7919)); nproc")
        assert answer.split() == [token, "1"], answer
        assert shell.console.name == f"mkcon{inst.id}"
        assert guest.run_dir.console_log(f"mkcon{inst.id}").read_text().count(token) >= 1
    # The host still answers, and reaches each of them by message too.
    for inst in instances:
        assert mk.ping(inst.id, count=1).ok


def test_a_hang_takes_backtraces_of_mkcon_instances_too(boot: Boot, small: Instance) -> None:
    guest, mk = boot_host(boot, [small])
    shell = mk.spawn(small, console=MKCON)
    with pytest.raises(GuestTimeout):
        guest.run("sleep 600", timeout=3)
    report = guest.run_dir.file("hang-report.txt").read_text()
    assert report.startswith("timed out on ssh"), report
    # SysRq l and w reached the instance's kernel through its console, and
    # what it printed then was saved apart.
    saved = guest.run_dir.file("hang-mkcon1.txt").read_text()
    assert "sysrq: Show Blocked State" in saved, saved[:500]
    assert "hang-mkcon1.txt" in report
    assert shell.check("echo back") == "back\n"


def test_a_reader_gets_the_last_words_then_the_end_of_file(boot: Boot, small: Instance) -> None:
    guest, mk = boot_host(boot, [small])
    shell = mk.spawn(small, console=MKCON)
    shell.check(
        "(sleep 3; echo last-words-$((6 * 7)) > /dev/console; poweroff -f) > /dev/null 2>&1 &"
    )
    shell.console.close()
    guest.instances.release(shell)
    guest.check("for i in $(seq 100); do pidof mkctl >/dev/null || exit 0; sleep 0.1; done; exit 1")
    # A reader of its own: it ends when the instance's kernel powers off.
    ended = guest.run("timeout 60 cat /dev/mkcon1; echo status=$?", timeout=90)
    assert "last-words-42" in ended.output
    assert ended.output.rstrip().endswith("status=0"), ended.output[-300:]
    assert mk.wait_status(small.name, "loading").ok
    assert not device_present(guest, small.id)
