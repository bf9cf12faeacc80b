"""The instance lifecycle: messages, ping, halt (graceful and forced), start again, failed."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from harness.core.errors import KernelCrash
from harness.multikernel import dtb
from harness.multikernel.dtb import Instance
from harness.multikernel.mk import ROOT, Multikernel, parse_ping
from harness.target import uarts
from harness.target.base import Target
from harness.target.shell import Shell, ShellUnusable

pytestmark = pytest.mark.qemu
Boot = Callable[..., Target]

WEB = Instance("web-server", 1, (1,), 0x10000000)
# A kernel loaded without its UART finds no console for its shell and powers
# itself off right after it is up: tests that need it to stay up give it one.
WITH_SHELL = f"{uarts.kernel_params('ttyS1')} mkkernel_uart=ttyS1"
DEBUGFS = "/sys/kernel/debug/multikernel"
# Data messages a sender may have unread by the receiver's user space.
DATA_WINDOW = 16
MSG_MAX = 112


def boot_host(boot: Boot, smp: int = 2) -> tuple[Target, Multikernel]:
    guest = boot(smp=smp, memory="2G", append="mkkernel_pool=1G")
    return guest, Multikernel(guest, guest.instances)


def pool_free(mk: Multikernel) -> int:
    pool = mk.pool()
    assert pool is not None
    return pool.free


def test_ping_both_ways_and_its_errors(boot: Boot) -> None:
    _, mk = boot_host(boot)
    assert mk.upload(dtb.to_dtb([WEB])).ok
    assert mk.load(WEB.id).ok
    # Loaded but not running: nothing to talk to.
    assert mk.ping(WEB.id).errno == "EHOSTDOWN"
    assert mk.unload(WEB.id).ok
    shell = mk.spawn(WEB)

    out = mk.ping(WEB.id, count=5, size=MSG_MAX)
    assert out.ok, out.output
    assert len(parse_ping(out.output)) == 5
    assert re.search(r"^rtt min/median/max = [0-9.]+/[0-9.]+/[0-9.]+ us$", out.output, re.M)
    back = shell.run("mkctl ping --id 0 --count 4")
    assert back.status == 0, back.output
    assert len(parse_ping(back.output)) == 4

    assert mk.ping(0).errno == "EINVAL"  # the host is no peer of itself
    assert mk.ping(7).errno == "ENOENT"
    assert mk.ping(WEB.id, size=MSG_MAX + 1).errno == "EINVAL"
    assert "ENOENT" in shell.run("mkctl ping --id 3").output


def test_graceful_halt_and_start_again_three_times(boot: Boot) -> None:
    guest, mk = boot_host(boot)
    free = pool_free(mk)
    shell = mk.spawn(WEB)
    for run in range(3):
        assert shell.check(f"echo run-$(({run} + 1))").strip() == f"run-{run + 1}"
        halted = mk.halt(WEB.id)
        assert halted.ok, halted.output
        assert mk.status(WEB.name) == "loading"
        assert "instance web-server: halted" in guest.check("dmesg | tail -5")
        with pytest.raises(ShellUnusable, match="halted"):
            shell.run("true")
        assert mk.ping(WEB.id).errno == "EHOSTDOWN"
        # The image is still loaded: it starts again without a new load.
        assert [k.mk_id for k in mk.kimages()] == [WEB.id]
        shell = mk.start(WEB)
        assert mk.status(WEB.name) == "active"
        assert mk.ping(WEB.id).ok
    log = guest.run_dir.console_log("kmsg1").read_text()
    assert log.count("the host asks this kernel to shut down") == 3

    assert mk.halt(WEB.id).ok
    assert mk.unload(WEB.id).ok
    assert mk.status(WEB.name) == "ready"
    assert mk.remove(WEB.name).ok
    mk.set_cpu_online(1, True)
    assert guest.check("cat /sys/devices/system/cpu/online").strip() == "0-1"
    assert pool_free(mk) == free


def test_halt_errors_change_nothing(boot: Boot) -> None:
    guest, mk = boot_host(boot)
    assert mk.halt(0).errno == "EINVAL"
    assert mk.halt(9).errno == "ENOENT"
    assert mk.upload(dtb.to_dtb([WEB])).ok
    assert mk.halt(WEB.id).errno == "EINVAL"  # ready
    shell = mk.spawn(WEB)
    denied = guest.run(f"su nobody -s /bin/sh -c 'mkctl halt --id {WEB.id}'")
    assert "EPERM" in denied.output, denied.output
    assert mk.unload(WEB.id).errno == "EBUSY"
    assert mk.remove(WEB.name).errno == "EBUSY"
    assert mk.status(WEB.name) == "active"
    assert shell.check("echo still-$((2 * 21))").strip() == "still-42"


def test_unacknowledged_shutdown_leaves_the_instance_running(boot: Boot) -> None:
    guest, mk = boot_host(boot)
    shell = mk.spawn(WEB)
    shell.check(f"echo ignore > {DEBUGFS}/halt_inject")
    refused = mk.halt(WEB.id)
    assert refused.errno == "ETIMEDOUT", refused.output
    assert "no acknowledgment of the shutdown request" in guest.check("dmesg | tail -3")
    assert mk.status(WEB.name) == "active"
    assert shell.check("echo here-$((3 * 3))").strip() == "here-9"
    assert mk.halt(WEB.id).ok


def test_forced_halt_stops_an_instance_spinning_with_interrupts_off(boot: Boot) -> None:
    guest, mk = boot_host(boot)
    shell = mk.spawn(WEB)
    # LKDTM's HARDLOCKUP spins with interrupts off: no IPI, no timer, no heartbeat.
    shell.console.send("echo HARDLOCKUP > /sys/kernel/debug/provoke-crash/DIRECT\n")
    failed = mk.wait_status(WEB.name, "failed", timeout=60)
    assert failed.ok, failed.output
    assert "failed: no heartbeat" in guest.check("dmesg | grep 'instance web-server'")
    halted = mk.halt(WEB.id, force=True)
    assert halted.ok, halted.output
    assert "halted (forced)" in guest.check("dmesg | tail -3")
    assert mk.status(WEB.name) == "loading"
    # The same image starts afresh on the CPU the NMI and INIT took back.
    again = mk.start(WEB)
    assert again.check("echo back-$((5 + 5))").strip() == "back-10"


def test_panic_fails_the_instance_and_rmdir_gives_everything_back(boot: Boot) -> None:
    guest, mk = boot_host(boot)
    free = pool_free(mk)
    shell = mk.spawn(WEB)
    # Started before the panic: poll() on status must wake on the change.
    guest.check(f"mkctl wait --name {WEB.name} --state failed --timeout 60 > /tmp/w 2>&1 &")
    with pytest.raises(KernelCrash) as info:
        shell.run("echo c > /proc/sysrq-trigger", timeout=60)
    assert info.value.kind == "panic"
    assert shell.take_crash() is not None
    assert mk.wait_status(WEB.name, "failed", timeout=30).ok
    guest.check("wait")
    assert guest.check("cat /tmp/w").strip() == "failed"
    reason = guest.check("dmesg | grep 'instance web-server: failed'")
    assert "its kernel panicked: sysrq triggered crash" in reason

    assert mk.halt(WEB.id).errno == "EINVAL"  # nothing left to ask
    assert mk.remove(WEB.name).ok
    mk.set_cpu_online(1, True)
    assert guest.check("cat /sys/devices/system/cpu/online").strip() == "0-1"
    assert pool_free(mk) == free
    assert mk.kimages() == []


def test_forced_halt_of_a_panicked_instance_and_a_fresh_start(boot: Boot) -> None:
    _, mk = boot_host(boot)
    shell = mk.spawn(WEB)
    with pytest.raises(KernelCrash):
        shell.run("echo c > /proc/sysrq-trigger", timeout=60)
    shell.take_crash()
    assert mk.wait_status(WEB.name, "failed", timeout=30).ok
    assert mk.halt(WEB.id, force=True).ok
    assert mk.status(WEB.name) == "loading"
    again = mk.start(WEB)
    assert again.check("echo alive-$((6 * 7))").strip() == "alive-42"
    assert mk.ping(WEB.id).ok


def test_messages_arrive_whole_in_order_and_a_full_ring_recovers(boot: Boot) -> None:
    guest, mk = boot_host(boot)
    shell = mk.spawn(WEB)
    send = f"mkctl send --id {WEB.id}"

    # Nobody reads in the instance: the sender's window fills up and stays
    # full however long it waits for room (--wait: 10 s).
    full = guest.run(f"{send} --count {DATA_WINDOW + 1} --size 8 --wait")
    assert "ENOSPC" in full.output, full.output
    assert f"message {DATA_WINDOW} of" in full.output
    # Unread data holds up nothing else: pings still go both ways.
    assert mk.ping(WEB.id).ok
    assert shell.run("mkctl ping --id 0").status == 0
    got = shell.check(f"mkctl recv --count {DATA_WINDOW} --timeout 30")
    seqs = [int(s) for s in re.findall(r"seq=(\d+) len=8 intact", got)]
    assert seqs == list(range(DATA_WINDOW))
    assert guest.check(f"{send} --count 1").startswith("sent 1")

    shell.check("mkctl recv --count 1")
    shell.check("mkctl recv --count 200 --timeout 120 > /tmp/got 2>&1 &")
    assert guest.check(f"{send} --count 200 --size 40 --wait").startswith("sent 200")
    shell.check("wait")
    got = shell.check("cat /tmp/got")
    assert [int(s) for s in re.findall(r"seq=(\d+) len=40 intact", got)] == list(range(200))

    assert guest.check(f"{send} --size {MSG_MAX}").startswith("sent 1")
    assert f"len={MSG_MAX} intact" in shell.check("mkctl recv --count 1")
    assert "EINVAL" in guest.run(f"{send} --size {MSG_MAX + 1}").output
    # And the other way.
    assert shell.check("mkctl send --id 0 --count 3 --size 20").startswith("sent 3")
    back = guest.check("mkctl recv --count 3")
    assert re.findall(r"message from 1: seq=(\d+) len=20 intact", back) == ["0", "1", "2"]


def test_twenty_cycles_give_back_memory_and_cpu(boot: Boot) -> None:
    guest, mk = boot_host(boot)
    free = pool_free(mk)
    iomem = guest.check("cat /proc/iomem")
    mk.spawn(WEB)
    for _ in range(20):
        assert mk.ping(WEB.id, count=1).ok
        assert mk.halt(WEB.id).ok
        mk.start(WEB)
    assert mk.halt(WEB.id).ok
    assert mk.unload(WEB.id).ok
    assert mk.remove(WEB.name).ok
    mk.set_cpu_online(1, True)
    assert pool_free(mk) == free
    assert guest.check("cat /proc/iomem") == iomem
    assert guest.check(f"ls {ROOT}/instances").strip() == ""


def test_active_only_once_the_kernel_says_it_is_up(boot: Boot) -> None:
    guest, mk = boot_host(boot)
    assert mk.upload(dtb.to_dtb([WEB])).ok
    assert mk.load(WEB.id, cmdline=WITH_SHELL).ok
    mk.set_cpu_online(1, False)
    # Read right after the exec returns, long before the kernel has booted.
    started = guest.check(f"mkctl exec --id {WEB.id} && cat {ROOT}/instances/{WEB.name}/status")
    assert started.strip() == "loading"
    assert mk.halt(WEB.id).errno == "EINVAL"  # not up: nothing to ask to shut down
    assert mk.unload(WEB.id).errno == "EBUSY"
    assert mk.remove(WEB.name).errno == "EBUSY"
    assert mk.wait_status(WEB.name, "active", timeout=120).ok
    log = guest.check("dmesg | grep 'instance web-server'")
    assert log.index("started on CPU 1") < log.index("its kernel is up")


def test_exec_and_unload_racing_one_wins(boot: Boot) -> None:
    guest, mk = boot_host(boot)
    assert mk.upload(dtb.to_dtb([WEB])).ok
    mk.set_cpu_online(1, False)
    for _ in range(20):
        assert mk.load(WEB.id, cmdline=WITH_SHELL).ok
        codes = guest.check(
            f"mkctl exec --id {WEB.id} 2>/dev/null & "
            f"mkctl unload --id {WEB.id} 2>/dev/null; u=$?; wait $!; echo $? $u"
        ).split()
        started, unloaded = (code == "0" for code in codes)
        assert started != unloaded, codes
        if unloaded:
            assert mk.status(WEB.name) == "ready"
            assert mk.kimages() == []
            continue
        assert mk.status(WEB.name) in ("loading", "active")
        assert [k.mk_id for k in mk.kimages()] == [WEB.id]
        assert mk.halt(WEB.id, force=True).ok
        assert mk.unload(WEB.id).ok
    assert mk.remove(WEB.name).ok


def test_others_keep_running_while_one_is_halted_and_started_again(boot: Boot) -> None:
    guest = boot(smp=4, memory="3G", append="mkkernel_pool=2G")
    mk = Multikernel(guest, guest.instances)
    smalls = [Instance(f"small{cpu}", cpu, (cpu,), 0x10000000) for cpu in (1, 2, 3)]
    shells = [mk.spawn(inst) for inst in smalls]
    count = "i=0; while :; do echo $i >> /tmp/n; i=$((i + 1)); sleep 0.1; done"
    for shell in shells[1:]:
        shell.check(f"({count}) > /dev/null 2>&1 &")

    def last(shell: Shell) -> int:
        return int(shell.check("tail -n 1 /tmp/n"))

    before = [last(s) for s in shells[1:]]
    assert mk.halt(smalls[0].id).ok
    mid = [last(s) for s in shells[1:]]
    again = mk.start(smalls[0])
    assert again.check("echo back").strip() == "back"
    after = [last(s) for s in shells[1:]]
    for shell, b, m, a in zip(shells[1:], before, mid, after, strict=True):
        assert b < m < a
        values = [int(v) for v in shell.check("cat /tmp/n").split()]
        assert values == list(range(len(values)))  # no gap, no repeat


# Written where the tests look for it, and only ever typed as a regex that does not match itself.
FILL = "yes MKH-SECRET-PATTERN | head -c $(({mib} << 20)) > /tmp/fill"


def ram_hits(sh: Shell) -> int:
    """How often the pattern FILL writes is in the System RAM of the kernel behind `sh`."""
    iomem = sh.check("cat /proc/iomem")
    # Its largest: below 1 MiB it may have an area to start CPUs from.
    ram = re.findall(r"^\s*([0-9a-f]+)-([0-9a-f]+) : System RAM$", iomem, re.M)
    assert ram, iomem
    start, end = max(((int(a, 16), int(b, 16)) for a, b in ram), key=lambda r: r[1] - r[0])
    # 1 MiB at a time: grep holds a whole line, and free RAM is
    # megabytes of zeroes without a newline (all of it got grep
    # OOM-killed in a 128 MiB instance).
    first, last = start // 4096, (end + 1) // 4096
    scan = (
        f"n=0; p={first}; while [ $p -lt {last} ]; do k=$(({last} - p)); "
        "[ $k -gt 256 ] && k=256; c=$(dd if=/dev/mem bs=4096 skip=$p count=$k 2>/dev/null"
        " | grep -c 'MKH-SECR[E]T-PATTERN'); n=$((n + c)); p=$((p + k)); done; echo $n"
    )
    return int(sh.check(scan, timeout=600))


def spawn_and_fill(mk: Multikernel, inst: Instance, mib: int) -> None:
    """Start `inst` and have its kernel write the pattern into `mib` MiB of its RAM."""
    shell = mk.spawn(inst)
    shell.check(FILL.format(mib=mib))
    assert ram_hits(shell) > 0


def test_the_next_instance_never_sees_the_last_ones_data(boot: Boot) -> None:
    _, mk = boot_host(boot)
    first = Instance("first", 1, (1,), 0x8000000)
    spawn_and_fill(mk, first, 48)
    region = mk.pool()
    assert region is not None
    before = region.child("first")
    assert mk.halt(first.id, force=True).ok
    assert mk.unload(first.id).ok
    assert mk.remove(first.name).ok

    second = Instance("second", 2, (1,), first.memory)
    nxt = mk.spawn(second)
    pool = mk.pool()
    assert pool is not None and before is not None
    after = pool.child("second")
    assert after is not None and (after.start, after.end) == (before.start, before.end)
    assert ram_hits(nxt) == 0


def test_a_restart_and_a_new_image_never_see_the_last_runs_data(boot: Boot) -> None:
    _, mk = boot_host(boot)
    inst = Instance("again", 1, (1,), 0x4000000)
    spawn_and_fill(mk, inst, 16)
    assert mk.halt(inst.id).ok
    # The same image, started again in the same memory.
    shell = mk.start(inst)
    assert ram_hits(shell) == 0
    shell.check(FILL.format(mib=16))
    assert mk.halt(inst.id, force=True).ok
    # A new image loaded into it.
    assert mk.unload(inst.id).ok
    assert ram_hits(mk.spawn(inst)) == 0


def test_poweroff_inside_an_instance_gives_its_cpu_back(boot: Boot) -> None:
    guest, mk = boot_host(boot)
    shell = mk.spawn(WEB)
    shell.console.send("poweroff -f\n")
    stopped = mk.wait_status(WEB.name, "loading", timeout=60)
    assert stopped.ok, stopped.output
    assert "its kernel stopped on its own" in guest.check("dmesg | tail -5")
    assert mk.ping(WEB.id).errno == "EHOSTDOWN"
    # Its CPU is the host's again, and the image starts afresh all the same.
    mk.set_cpu_online(1, True)
    mk.set_cpu_online(1, False)
    again = mk.start(WEB)
    assert again.check("echo again").strip() == "again"
    with pytest.raises(ShellUnusable, match="started again"):
        shell.run("true")
