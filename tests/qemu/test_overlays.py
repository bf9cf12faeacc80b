"""Device-tree overlays (INTERFACE §9): overlays/new, tx_<N>, rollback by rmdir."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from harness.multikernel import dtb
from harness.multikernel import overlay as ov
from harness.multikernel.dtb import Instance
from harness.multikernel.mk import MKCON, ROOT, Multikernel, Pool, Transaction
from harness.target.base import Target
from harness.target.protocol import CommandProtocol
from harness.target.shell import Shell
from tests.conftest import apic_ids

pytestmark = pytest.mark.qemu
Boot = Callable[..., Target]

MIB = 1 << 20
WEB = Instance("web", 1, (1,), 128 * MIB)
DB = Instance("db", 2, (3,), 64 * MIB)


def boot_mk(boot: Boot) -> tuple[Target, Multikernel]:
    guest = boot(smp=4, memory="2G", append="mkkernel_pool=1G")
    mk = Multikernel(guest, guest.instances)
    assert mk.upload(dtb.to_dtb([WEB, DB])).ok
    return guest, mk


def blob(*fragments: str) -> bytes:
    return ov.compile_dts(ov.source(*fragments))


def apply(mk: Multikernel, *fragments: str) -> Transaction:
    return mk.apply_overlay(blob(*fragments))


def on(name: str, *operations: str) -> str:
    """A fragment on instance `name`."""
    return ov.fragment(f"/instances/{name}", *operations)


def snapshot(mk: Multikernel) -> tuple[Pool | None, dict[str, str], list[int]]:
    """What an overlay changes: the pool's regions, each instance's source, the transactions."""
    sources = {name: mk.read(name, "device_tree_source") for name in mk.instances()}
    return mk.pool(), sources, [tx.id for tx in mk.transactions()]


def resources(source: str) -> tuple[list[int], int, list[tuple[int, int]]]:
    """cpus, memory-bytes and memory-ranges of an instance's device_tree_source."""
    cpus = re.search(r"cpus = <([^>]*)>", source)
    memory = re.search(r"memory-bytes = <([^>]*)>", source)
    assert cpus and memory, source
    words = [int(w, 16) for w in memory[1].split()]
    ranges = re.search(r"memory-ranges = <([^>]*)>", source)
    cells = [int(w, 16) for w in ranges[1].split()] if ranges else []
    pairs = [(cells[i] << 32 | cells[i + 1]) for i in range(0, len(cells), 2)]
    return (
        [int(c) for c in cpus[1].split()],
        words[0] << 32 | words[1] if len(words) == 2 else words[0],
        list(zip(pairs[::2], pairs[1::2], strict=True)),
    )


def kernel_lines(guest: Target, since: int) -> list[str]:
    lines = guest.check("dmesg").splitlines()[since:]
    return [line for line in lines if "multikernel:" in line]


def test_grow_a_ready_instance_and_roll_it_back(boot: Boot) -> None:
    guest, mk = boot_mk(boot)
    before = snapshot(mk)
    tx = apply(mk, on("web", ov.cpu_op("cpu-add", 2), ov.memory_add(128 * MIB)))
    assert (tx.status, tx.instance) == ("applied", "/instances/web")
    assert mk.transactions() == [tx]

    cpus, memory, ranges = resources(mk.read("web", "device_tree_source"))
    assert cpus == [1, 2]
    assert memory == 256 * MIB
    assert len(ranges) == 1 and ranges[0][1] == 128 * MIB
    pool = mk.pool()
    assert pool is not None
    webs = [r for r in pool.children if r.name == "web"]
    assert [(r.start, r.size) for r in webs][1:] == ranges
    # The blob as written (mk.overlay() staged it there) reads back.
    assert guest.check(f"cmp {tx.path}/dtbo /tmp/mkh-overlay.dtbo && echo same").strip() == "same"

    assert mk.rollback(tx).ok
    assert snapshot(mk) == before


def test_shrink_a_ready_instance_and_roll_it_back(boot: Boot) -> None:
    _guest, mk = boot_mk(boot)
    grow = apply(mk, on("web", ov.cpu_op("cpu-add", 2), ov.memory_add(64 * MIB, 32 * MIB)))
    grown = snapshot(mk)
    _, _, ranges = resources(grown[1]["web"])
    shrink = apply(mk, on("web", ov.cpu_op("cpu-remove", 2), ov.memory_remove(ranges[0])))
    cpus, memory, left = resources(mk.read("web", "device_tree_source"))
    assert (cpus, memory, left) == ([1], 128 * MIB + 32 * MIB, ranges[1:])
    pool = mk.pool()
    assert pool is not None and all(r.start != ranges[0][0] for r in pool.children)

    # Rolled back newest first: the shrink, then the growth, each exactly.
    assert mk.rollback(shrink).ok
    assert snapshot(mk) == grown
    assert mk.rollback(grow).ok
    assert resources(mk.read("web", "device_tree_source")) == ([1], 128 * MIB, [])
    assert mk.transactions() == []


def test_create_an_instance_and_change_it_in_one_transaction(boot: Boot) -> None:
    _guest, mk = boot_mk(boot)
    before = snapshot(mk)
    tx = apply(
        mk,
        ov.fragment("/instances", ov.create("batch", (2,), 64 * MIB)),
        on("batch", ov.memory_add(32 * MIB)),
    )
    assert tx.instance == "/instances"
    assert mk.instances() == ["batch", "db", "web"]
    assert mk.status("batch") == "ready"
    # No id given: the lowest free one.
    assert mk.read("batch", "id").strip() == "3"
    cpus, memory, ranges = resources(mk.read("batch", "device_tree_source"))
    assert (cpus, memory, len(ranges)) == ([2], 96 * MIB, 1)

    assert mk.rollback(tx).ok
    assert snapshot(mk) == before


def test_remove_an_instance_and_roll_it_back_in_place(boot: Boot) -> None:
    _guest, mk = boot_mk(boot)
    grow = apply(mk, on("db", ov.memory_add(32 * MIB)))
    before = snapshot(mk)
    gone = apply(mk, ov.fragment("/instances", ov.remove("db")))
    assert mk.instances() == ["web"]
    pool = mk.pool()
    assert pool is not None and pool.child("db") is None

    assert mk.rollback(gone).ok
    # Its id, CPUs and both ranges of memory where they were.
    assert snapshot(mk) == before
    assert mk.rollback(grow).ok


def test_a_rollback_that_cannot_be_done_is_ebusy_and_changes_nothing(boot: Boot) -> None:
    _guest, mk = boot_mk(boot)
    tx = apply(mk, ov.fragment("/instances", ov.create("batch", (2,), 64 * MIB)))
    assert mk.load(3).ok
    before = snapshot(mk)
    assert mk.rollback(tx).errno == "EBUSY"
    assert snapshot(mk) == before
    assert mk.unload(3).ok
    assert mk.rollback(tx).ok
    assert mk.instances() == ["db", "web"]


# Overlays the kernel refuses, and the errno of each (INTERFACE §9).
REFUSED = {
    "no such instance": ("ENOENT", on("nosuch", ov.cpu_op("cpu-add", 2))),
    "a CPU another instance has": ("EBUSY", on("web", ov.cpu_op("cpu-add", 3))),
    "its first CPU": ("EBUSY", on("db", ov.cpu_op("cpu-remove", 3))),
    "a CPU it does not have": ("EINVAL", on("web", ov.cpu_op("cpu-remove", 2))),
    "the boot CPU": ("EINVAL", on("web", ov.cpu_op("cpu-add", 0))),
    "a pool too small": ("ENOSPC", on("web", ov.memory_add(2048 * MIB))),
    "memory never added": ("EINVAL", on("web", ov.memory_remove((16 * MIB, 32 * MIB)))),
    "a name in use": ("EEXIST", ov.fragment("/instances", ov.create("db", (2,), 64 * MIB))),
    "an id in use": ("EEXIST", ov.fragment("/instances", ov.create("b", (2,), MIB, mk_id=1))),
    "the pool itself": ("EPERM", ov.fragment("/resources", ov.memory_add(32 * MIB))),
    "another target": ("EINVAL", ov.fragment("/chosen", ov.memory_add(32 * MIB))),
    "an operation elsewhere": ("EINVAL", ov.fragment("/instances", ov.cpu_op("cpu-add", 2))),
    # The first fragment alone would apply: the second one undoes it.
    "a second fragment that fails": (
        "ENOENT",
        on("web", ov.memory_add(32 * MIB), ov.cpu_op("cpu-add", 2))
        + on("nosuch", ov.cpu_op("cpu-add", 2)),
    ),
}


@pytest.mark.parametrize("case", REFUSED, ids=lambda case: case.replace(" ", "-"))
def test_a_refused_overlay_changes_nothing(boot: Boot, case: str) -> None:
    expected, fragments = REFUSED[case]
    guest, mk = boot_mk(boot)
    before = snapshot(mk)
    lines = len(guest.check("dmesg").splitlines())
    outcome = mk.overlay(blob(fragments))
    assert outcome.errno == expected, outcome.output
    assert snapshot(mk) == before
    log = kernel_lines(guest, lines)
    assert len(log) == 1 and "overlay " in log[0], log


def changing_web_is_ebusy(mk: Multikernel) -> None:
    """Memory added to web, or web removed: EBUSY, and nothing changes."""
    before = snapshot(mk)
    for fragment in (
        on("web", ov.memory_add(32 * MIB)),
        ov.fragment("/instances", ov.remove("web")),
    ):
        assert mk.overlay(blob(fragment)).errno == "EBUSY"
    assert snapshot(mk) == before


def test_the_memory_of_the_loaded_kernel_and_loaded_instances_are_ebusy(boot: Boot) -> None:
    _guest, mk = boot_mk(boot)
    pool = mk.pool()
    assert pool is not None
    web = pool.child("web")
    assert web is not None
    first = on("web", ov.memory_remove((web.start, web.size)))
    assert mk.overlay(blob(first)).errno == "EBUSY"

    assert mk.load(WEB.id).ok
    changing_web_is_ebusy(mk)


def test_garbage_and_unprivileged_writes_are_refused(boot: Boot) -> None:
    guest, mk = boot_mk(boot)
    assert mk.overlay(b"\xd0\x0d\xfe\xed" + bytes(60)).errno == "EINVAL"
    # A multikernel device tree is not an overlay.
    assert mk.overlay(dtb.to_dtb([Instance("x", 9, (2,), 64 * MIB)])).errno == "EINVAL"

    add = blob(on("web", ov.cpu_op("cpu-add", 2)))
    guest.write_file("/tmp/x.dtbo", add)
    guest.check("chmod 644 /tmp/x.dtbo")
    denied = guest.run(f"su nobody -s /bin/sh -c 'dd if=/tmp/x.dtbo of={ROOT}/overlays/new 2>&1'")
    assert "Operation not permitted" in denied.output
    assert mk.transactions() == []

    tx = mk.apply_overlay(add)
    denied = guest.run(f"su nobody -s /bin/sh -c 'rmdir {tx.path}' 2>&1")
    assert "Operation not permitted" in denied.output or "Permission denied" in denied.output
    assert mk.transactions() == [tx]
    # Ids count up and are never used again.
    assert mk.rollback(tx).ok
    assert mk.apply_overlay(add).id == tx.id + 1


def test_an_instance_starts_with_what_overlays_gave_it(boot: Boot) -> None:
    _guest, mk = boot_mk(boot)
    tx = apply(mk, on("web", ov.cpu_op("cpu-add", 2), ov.memory_add(128 * MIB)))
    _, _, ranges = resources(mk.read("web", "device_tree_source"))
    grown = Instance("web", 1, (1, 2), 256 * MIB)
    shell = mk.spawn(grown)
    assert shell.check("nproc").strip() == "2"
    start, size = ranges[0]
    iomem = shell.check("cat /proc/iomem")
    # Whole memory blocks: hot-added as its kernel restores the instance.
    assert f"{start:08x}-{start + size - 1:08x} : System RAM" in iomem, iomem
    # Its kernel has both ranges: more than the first one could hold.
    total = int(shell.check("awk '/MemTotal/ {print $2}' /proc/meminfo")) * 1024
    assert total > WEB.memory
    child = mk.restored(shell)
    assert child["web"].device_tree_source == mk.view("web").device_tree_source

    # Halted and unloaded, it can shrink again; its next start has only the first range.
    assert mk.halt(WEB.id).ok
    assert mk.unload(WEB.id).ok
    assert mk.rollback(tx).ok
    shell = mk.spawn(WEB)
    assert shell.check("nproc").strip() == "1"
    total = int(shell.check("awk '/MemTotal/ {print $2}' /proc/meminfo")) * 1024
    assert total < WEB.memory


# A running instance (INTERFACE §9): its kernel gains and loses CPUs and memory.
BLOCK = 128 * MIB  # memory comes and goes in whole memory blocks of the instance's kernel
DEBUGFS = "/sys/kernel/debug/multikernel"


def mem_total(shell: CommandProtocol) -> int:
    return int(shell.check("awk '/MemTotal/ {print $2}' /proc/meminfo")) * 1024


def online(shell: CommandProtocol) -> str:
    return shell.check("cat /sys/devices/system/cpu/online").strip()


def running_web(boot: Boot) -> tuple[Target, Multikernel, Shell]:
    guest, mk = boot_mk(boot)
    shell = mk.spawn(WEB)
    assert shell.check("nproc").strip() == "1"
    return guest, mk, shell


def test_a_running_instance_gains_and_loses_a_cpu_and_memory(boot: Boot) -> None:
    guest, mk, shell = running_web(boot)
    before = snapshot(mk)
    memory = mem_total(shell)
    guest.check("echo 0 > /sys/devices/system/cpu/cpu2/online")

    tx = apply(mk, on("web", ov.cpu_op("cpu-add", 2), ov.memory_add(BLOCK)))
    assert shell.check("nproc").strip() == "2"
    assert apic_ids(shell) == [1, 2]
    # A busy loop on each CPU: both do the work.
    ticks = shell.check(
        "cat /proc/stat; for i in 1 2; do (while :; do :; done) & done; sleep 3; "
        "kill $(jobs -p); cat /proc/stat"
    )
    cpu1 = [
        int(f[1]) + int(f[3])
        for f in (line.split() for line in ticks.splitlines())
        if f[0] == "cpu1"
    ]
    assert len(cpu1) == 2 and cpu1[1] - cpu1[0] >= 100, ticks
    assert mem_total(shell) >= memory + BLOCK - 8 * MIB
    # Both kernels describe it alike.
    _, _, ranges = resources(mk.read("web", "device_tree_source"))
    assert resources(mk.restored(shell)["web"].device_tree_source) == (
        [1, 2],
        WEB.memory + BLOCK,
        ranges,
    )
    # The host cannot bring the CPU it lent back up.
    assert guest.run("echo 1 > /sys/devices/system/cpu/cpu2/online").status != 0

    assert mk.rollback(tx).ok
    assert shell.check("nproc").strip() == "1"
    assert mem_total(shell) == memory
    assert resources(mk.restored(shell)["web"].device_tree_source) == ([1], WEB.memory, [])
    assert snapshot(mk) == before
    assert mk.ping(WEB.id).ok
    # Returned, the CPU is the host's again.
    guest.check("echo 1 > /sys/devices/system/cpu/cpu2/online")
    assert "2" in online(guest)


def test_a_resize_the_instance_does_not_answer_is_etimedout_and_changes_nothing(boot: Boot) -> None:
    guest, mk, shell = running_web(boot)
    guest.check("echo 0 > /sys/devices/system/cpu/cpu2/online")
    before = snapshot(mk)
    memory = mem_total(shell)
    shell.check(f"echo ignore > {DEBUGFS}/resize_inject")
    outcome = mk.overlay(blob(on("web", ov.cpu_op("cpu-add", 2))))
    assert outcome.errno == "ETIMEDOUT", outcome.output
    assert snapshot(mk) == before
    assert shell.check("nproc").strip() == "1"
    assert mem_total(shell) == memory
    assert mk.status("web") == "active"
    assert mk.ping(WEB.id).ok
    guest.check("echo 1 > /sys/devices/system/cpu/cpu2/online")


def test_running_instances_refuse_what_they_cannot_take(boot: Boot) -> None:
    _guest, mk, _shell = running_web(boot)
    before = snapshot(mk)
    # CPU 2 is online in the host; memory not in whole blocks; the instance itself.
    for expected, fragment in (
        ("EBUSY", on("web", ov.cpu_op("cpu-add", 2))),
        ("EINVAL", on("web", ov.memory_add(64 * MIB))),
        ("EBUSY", ov.fragment("/instances", ov.remove("web"))),
    ):
        outcome = mk.overlay(blob(fragment))
        assert outcome.errno == expected, outcome.output
        assert snapshot(mk) == before
    assert mk.ping(WEB.id).ok


def test_twenty_resizes_of_a_running_instance_leave_it_as_it_was(boot: Boot) -> None:
    guest, mk, shell = running_web(boot)
    guest.check("echo 0 > /sys/devices/system/cpu/cpu2/online")
    before = snapshot(mk)
    memory = mem_total(shell)
    for _ in range(20):
        tx = apply(mk, on("web", ov.cpu_op("cpu-add", 2), ov.memory_add(BLOCK)))
        assert shell.check("nproc").strip() == "2"
        assert mk.rollback(tx).ok
    assert snapshot(mk) == before
    assert shell.check("nproc").strip() == "1"
    assert mem_total(shell) == memory
    assert mk.ping(WEB.id).ok


def test_a_halted_instance_starts_again_with_what_it_gained_running(boot: Boot) -> None:
    guest, mk, shell = running_web(boot)
    guest.check("echo 0 > /sys/devices/system/cpu/cpu2/online")
    apply(mk, on("web", ov.cpu_op("cpu-add", 2), ov.memory_add(BLOCK)))
    grown = mem_total(shell)
    assert mk.halt(WEB.id).ok
    assert mk.status("web") == "loading"

    shell = mk.start(Instance("web", 1, (1, 2), WEB.memory + BLOCK))
    assert shell.check("nproc").strip() == "2"
    assert apic_ids(shell) == [1, 2]
    # Its memory from the start this time, all of it RAM.
    assert mem_total(shell) >= grown - 8 * MIB
    assert mk.restored(shell)["web"].device_tree_source == mk.view("web").device_tree_source

    # Shrunk while running, the next start has only the first range and CPU.
    _, _, ranges = resources(mk.read("web", "device_tree_source"))
    apply(mk, on("web", ov.cpu_op("cpu-remove", 2), ov.memory_remove(ranges[0])))
    assert mk.halt(WEB.id).ok
    shell = mk.start(WEB)
    assert shell.check("nproc").strip() == "1"
    assert mem_total(shell) < WEB.memory
    guest.check("echo 1 > /sys/devices/system/cpu/cpu2/online")


def test_memory_the_running_kernel_cannot_offline_is_ebusy_and_stays(boot: Boot) -> None:
    _guest, mk, shell = running_web(boot)
    apply(mk, on("web", ov.memory_add(BLOCK)))
    grown = snapshot(mk)
    memory = mem_total(shell)
    _, _, ranges = resources(grown[1]["web"])
    # Its kernel answers as it does for pages it cannot move.
    shell.check(f"echo refuse > {DEBUGFS}/resize_inject")
    outcome = mk.overlay(blob(on("web", ov.memory_remove(ranges[0]))))
    assert outcome.errno == "EBUSY", outcome.output
    assert snapshot(mk) == grown
    assert mem_total(shell) == memory
    assert mk.ping(WEB.id).ok


def test_a_failed_instance_is_ebusy(boot: Boot) -> None:
    guest, mk = boot_mk(boot)
    assert mk.load(WEB.id).ok
    mk.set_cpu_online(1, False)
    guest.check(f"echo no-ack > {DEBUGFS}/start_inject")
    assert mk.exec(WEB.id).errno == "ETIMEDOUT"
    assert mk.status("web") == "failed"
    changing_web_is_ebusy(mk)


def test_instances_an_overlay_changed_go_through_a_host_live_update(boot: Boot) -> None:
    guest = boot(smp=4, memory="2G", append="mkkernel_pool=1G", transport="ssh")
    mk = Multikernel(guest, guest.instances)
    assert mk.upload(dtb.to_dtb([WEB, DB])).ok
    guest.check("echo 0 > /sys/devices/system/cpu/cpu2/online")
    # db is ready with a second range; web runs with a CPU and a block more.
    apply(mk, on("db", ov.memory_add(32 * MIB)))
    shell = mk.spawn(WEB, console=MKCON)
    apply(mk, on("web", ov.cpu_op("cpu-add", 2), ov.memory_add(BLOCK)))
    before = snapshot(mk)
    views = mk.views()
    memory = mem_total(shell)

    guest.kexec()
    # The new host lists both with what they have, and the pool alike.
    assert mk.views() == views
    assert snapshot(mk)[:2] == before[:2]
    assert shell.check("nproc").strip() == "2"
    assert mem_total(shell) == memory
    assert mk.ping(WEB.id).ok
    assert guest.run("echo 1 > /sys/devices/system/cpu/cpu2/online").status != 0
    # The new host takes them back from the running kernel.
    _, _, ranges = resources(views["web"].device_tree_source)
    apply(mk, on("web", ov.cpu_op("cpu-remove", 2), ov.memory_remove(ranges[0])))
    assert shell.check("nproc").strip() == "1"
    guest.check("echo 1 > /sys/devices/system/cpu/cpu2/online")


def test_a_rollback_leaves_an_instance_of_the_same_name_made_since_alone(boot: Boot) -> None:
    _guest, mk = boot_mk(boot)
    tx = apply(mk, ov.fragment("/instances", ov.create("batch", (2,), 64 * MIB)))
    assert mk.remove("batch").ok
    again = Instance("batch", 9, (2,), 32 * MIB)
    assert mk.upload(dtb.to_dtb([again])).ok
    # The instance tx_1 made is gone: nothing of it to roll back.
    assert mk.rollback(tx).ok
    assert mk.instances() == ["batch", "db", "web"]
    assert mk.read("batch", "id").strip() == "9"


def test_smt_siblings_come_and_go_together(boot: Boot) -> None:
    guest = boot(smp=4, threads=2, memory="2G", append="mkkernel_pool=1G")
    mk = Multikernel(guest, guest.instances)
    # QEMU's threads=2: CPUs 0-1 are one core, 2-3 the other.
    assert mk.upload(dtb.to_dtb([Instance("web", 1, (2, 3), 128 * MIB)])).ok
    before = snapshot(mk)
    outcome = mk.overlay(blob(on("web", ov.cpu_op("cpu-remove", 3))))
    assert outcome.errno == "EINVAL", outcome.output
    assert snapshot(mk) == before
    assert "shares its core with CPU" in guest.check("dmesg | grep multikernel: | tail -1")


def web_cannot_gain_cpu_3(guest: Target, mk: Multikernel, reason: str) -> None:
    """With CPUs 2 and 3 offline in the host, cpu-add 3 on web is EBUSY for `reason`."""
    for cpu in (2, 3):
        guest.check(f"echo 0 > /sys/devices/system/cpu/cpu{cpu}/online")
    before = snapshot(mk)
    outcome = mk.overlay(blob(on("web", ov.cpu_op("cpu-add", 3))))
    assert outcome.errno == "EBUSY", outcome.output
    assert reason in guest.check("dmesg | grep multikernel: | tail -1")
    assert snapshot(mk) == before


def test_a_running_instance_gains_only_cpus_its_kernel_was_told_of(boot: Boot) -> None:
    guest, mk = boot_mk(boot)
    # db holds CPU 3 as web starts: web's kernel is told of CPU 2 only.
    shell = mk.spawn(WEB)
    assert mk.remove("db").ok
    web_cannot_gain_cpu_3(guest, mk, "was not told of CPU 3")
    apply(mk, on("web", ov.cpu_op("cpu-add", 2)))
    assert shell.check("nproc").strip() == "2"


def test_a_running_instance_keeps_the_cpu_it_started_on_first(boot: Boot) -> None:
    guest = boot(smp=4, memory="2G", append="mkkernel_pool=1G")
    mk = Multikernel(guest, guest.instances)
    late = Instance("late", 1, (2,), 128 * MIB)
    mk.spawn(late)
    guest.check("echo 0 > /sys/devices/system/cpu/cpu1/online")
    before = snapshot(mk)
    outcome = mk.overlay(blob(on("late", ov.cpu_op("cpu-add", 1))))
    assert outcome.errno == "EBUSY", outcome.output
    assert snapshot(mk) == before


def test_nr_cpus_caps_the_cpus_a_running_instance_can_gain(boot: Boot) -> None:
    guest, mk = boot_mk(boot)
    assert mk.remove("db").ok
    # Told of CPUs 2 and 3, its kernel makes room for one more than its own.
    shell = mk.spawn(WEB, cmdline="nr_cpus=2")
    web_cannot_gain_cpu_3(guest, mk, "did not bring CPU 3 up")
    assert shell.check("nproc").strip() == "1"
    guest.check("echo 1 > /sys/devices/system/cpu/cpu3/online")
    apply(mk, on("web", ov.cpu_op("cpu-add", 2)))
    assert shell.check("nproc").strip() == "2"
