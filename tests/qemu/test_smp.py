"""SMP instances: a spawned kernel runs on every CPU of its instance, and only there."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from harness.multikernel import dtb
from harness.multikernel.dtb import Instance
from harness.multikernel.mk import Multikernel
from harness.target.base import Target
from harness.target.shell import Shell
from tests.conftest import apic_ids, qemu_only

pytestmark = pytest.mark.qemu
Boot = Callable[..., Target]

DB = Instance("database", 2, (2, 3), 0x40000000)


def boot_host(boot: Boot) -> tuple[Target, Multikernel]:
    guest = boot(smp=4, memory="4G", append="mkkernel_pool=2G")
    mk = Multikernel(guest, guest.instances)
    assert mk.upload(dtb.to_dtb([DB])).ok
    return guest, mk


def busy_ticks(shell: Shell) -> dict[str, int]:
    """user + system ticks of each CPU, from /proc/stat."""
    ticks = {}
    for line in shell.check("cat /proc/stat").splitlines():
        fields = line.split()
        if re.fullmatch(r"cpu\d+", fields[0]):
            ticks[fields[0]] = int(fields[1]) + int(fields[3])
    return ticks


def test_database_runs_on_both_of_its_cpus(boot: Boot) -> None:
    guest, mk = boot_host(boot)
    shell = mk.spawn(DB)
    assert shell.check("nproc").strip() == "2"
    assert shell.check("cat /sys/devices/system/cpu/online").strip() == "0-1"
    assert apic_ids(shell) == [2, 3]
    assert 2 not in apic_ids(guest) and 3 not in apic_ids(guest)

    # One busy loop per CPU: both CPUs of the child do the work.
    before = busy_ticks(shell)
    shell.check("for i in 1 2; do (while :; do :; done) & done; sleep 4; kill $(jobs -p)")
    after = busy_ticks(shell)
    assert set(after) == {"cpu0", "cpu1"}
    for cpu in ("cpu0", "cpu1"):
        # /proc/stat counts USER_HZ (100) ticks: at least 1 s of the 4 s on each.
        assert after[cpu] - before[cpu] >= 100, (before, after)

    # The restored instance matches the host's, file by file.
    child = mk.restored(shell)
    host = mk.view(DB.name)
    assert list(child) == [DB.name]
    assert (child[DB.name].id, child[DB.name].status) == (DB.id, "ready")
    assert child[DB.name].device_tree_source == host.device_tree_source


def test_host_keeps_every_cpu_of_a_running_instance(boot: Boot) -> None:
    guest, mk = boot_host(boot)
    mk.spawn(DB)
    for cpu in DB.cpus:
        back = guest.run(f"echo 1 > /sys/devices/system/cpu/cpu{cpu}/online")
        assert back.status != 0
    assert guest.check("cat /sys/devices/system/cpu/online").strip() == "0-1"
    assert qemu_only(guest).machine is not None
    qemu_only(guest).machine.health()


def test_exec_with_one_cpu_online_is_ebusy_and_changes_nothing(boot: Boot) -> None:
    guest, mk = boot_host(boot)
    assert mk.load(DB.id).ok
    mk.set_cpu_online(2, False)  # 3 stays online
    outcome = mk.exec(DB.id)
    assert outcome.errno == "EBUSY"
    assert mk.status(DB.name) == "loading"
    assert guest.check("cat /sys/devices/system/cpu/online").strip() == "0-1,3"
    assert [k.mk_id for k in mk.kimages()] == [DB.id]
    assert "instance database: CPU 3 is online here" in guest.check("dmesg")
    # Nothing was claimed: CPU 2 comes back, and then the instance starts.
    mk.set_cpu_online(2, True)
    assert guest.check("cat /sys/devices/system/cpu/online").strip() == "0-3"
    assert mk.unload(DB.id).ok
    shell = mk.spawn(DB)
    assert shell.check("nproc").strip() == "2"
