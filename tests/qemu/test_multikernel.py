"""The multikernel control plane: pool, /sys/fs/multikernel, DTB validation, kexec load."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest

from harness.build.images import Images
from harness.core.paths import EXAMPLE_DTS
from harness.multikernel import dtb
from harness.multikernel.dtb import Instance
from harness.multikernel.mk import ROOT, Multikernel, Pool
from harness.target.base import Target
from harness.target.options import TargetOptions
from harness.target.qemu import QemuTarget

pytestmark = pytest.mark.qemu
Boot = Callable[..., Target]

POOL = "mkkernel_pool=2G"
MEMORY = "4G"
WEB = Instance("web-server", 1, (1,), 0x20000000)
DB = Instance("database", 2, (2, 3), 0x40000000)
MIB = 1 << 20  # the least memory an instance can have

# usage.rst Phase 1, step 1: the example device tree.
USAGE_DTS = EXAMPLE_DTS.read_text()

WEB_SOURCE = """/dts-v1/;

/web-server {
    compatible = "multikernel-v1";
    id = <1>;
    resources {
        cpus = <1>;
        memory-bytes = <0x20000000>; // 512 MB
    };
};
"""


def boot_mk(boot: Boot) -> tuple[Target, Multikernel]:
    guest = boot(smp=4, memory=MEMORY, append=POOL)
    return guest, Multikernel(guest, guest.instances)


def pool_of(mk: Multikernel) -> Pool:
    pool = mk.pool()
    assert pool is not None, "no Multikernel Memory Pool in /proc/iomem"
    return pool


def test_usage_phase1_workflow(boot: Boot) -> None:
    guest, mk = boot_mk(boot)
    assert guest.check(f"ls {ROOT}").split() == ["device_tree", "instances", "overlays"]
    guest.write_file("/root/multikernel.dtb", dtb.compile_dts(USAGE_DTS))
    guest.check(f"cat /root/multikernel.dtb > {ROOT}/device_tree")

    assert guest.check(f"ls {ROOT}/instances/").split() == ["database", "web-server"]
    assert mk.read("web-server", "id") == "1\n"
    assert mk.read("database", "id") == "2\n"
    assert mk.read("web-server", "status") == "ready\n"
    assert mk.read("database", "status") == "ready\n"
    assert mk.read("web-server", "device_tree_source") == WEB_SOURCE
    assert mk.read("database", "device_tree_source") == dtb.instance_dts(DB)

    pool = pool_of(mk)
    assert pool.region.size == 2 << 30
    web, db = pool.child("web-server"), pool.child("database")
    assert web is not None and web.size == WEB.memory
    assert db is not None and db.size == DB.memory
    assert pool.free == (2 << 30) - WEB.memory - DB.memory


def test_pool_without_instances_and_without_pool(boot: Boot) -> None:
    _guest, mk = boot_mk(boot)
    pool = pool_of(mk)
    assert pool.children == () and pool.free == 2 << 30
    plain = boot(smp=4)
    assert Multikernel(plain, plain.instances).pool() is None
    outcome = Multikernel(plain, plain.instances).upload(dtb.to_dtb([WEB]))
    assert outcome.errno == "ENOSPC"
    assert "no multikernel memory pool" in plain.check("dmesg | grep 'instance web-server'")


@pytest.fixture(scope="module")
def validation_guest(
    guest_images: Images, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Target, Multikernel]]:
    """One guest holding web-server, against which every bad DTB is tried."""
    from harness.core.rundir import RunDir

    run = RunDir(tmp_path_factory.mktemp("validation"))
    guest = QemuTarget(guest_images, TargetOptions(smp=4, memory=MEMORY, append=POOL), run)
    guest.boot()
    mk = Multikernel(guest, guest.instances)
    assert mk.upload(dtb.to_dtb([WEB])).ok
    yield guest, mk
    guest.close()


def _bad(text: str) -> bytes:
    return dtb.compile_dts(text)


BAD_DTBS: list[tuple[str, Callable[[], bytes], str, str]] = [
    (
        "wrong-compatible",
        lambda: _bad(USAGE_DTS.replace('"multikernel-v1"', '"other-v1"')),
        "EINVAL",
        "<none>",
    ),
    (
        "no-instances",
        lambda: _bad('/dts-v1/; / { compatible = "multikernel-v1"; };'),
        "EINVAL",
        "<none>",
    ),
    (
        "duplicate-id",
        lambda: dtb.to_dtb([Instance("a", 5, (2,), MIB), Instance("b", 5, (3,), MIB)]),
        "EEXIST",
        "b",
    ),
    (
        "duplicate-name",
        lambda: dtb.to_dtb([Instance("web-server", 6, (2,), MIB)]),
        "EEXIST",
        "web-server",
    ),
    ("id-in-use", lambda: dtb.to_dtb([Instance("c", 1, (2,), MIB)]), "EEXIST", "c"),
    ("cpu-taken", lambda: dtb.to_dtb([Instance("d", 7, (1,), MIB)]), "EBUSY", "d"),
    ("cpu-out-of-range", lambda: dtb.to_dtb([Instance("e", 8, (9,), MIB)]), "EINVAL", "e"),
    ("boot-cpu", lambda: dtb.to_dtb([Instance("z", 14, (0,), MIB)]), "EINVAL", "z"),
    ("memory-over-pool", lambda: dtb.to_dtb([Instance("f", 9, (2,), 3 << 30)]), "ENOSPC", "f"),
    ("memory-unaligned", lambda: dtb.to_dtb([Instance("g", 10, (2,), 0x1001)]), "EINVAL", "g"),
    ("memory-below-1-MiB", lambda: dtb.to_dtb([Instance("m", 15, (2,), 0xFF000)]), "EINVAL", "m"),
    ("truncated", lambda: dtb.to_dtb([DB])[:60], "EINVAL", "<none>"),
    ("garbage", lambda: b"this is not a device tree blob at all" * 4, "EINVAL", "<none>"),
    *(
        (
            f"name-{case}",
            lambda name=name: dtb.to_dtb([Instance(name, 13, (2,), 4096)]),
            "EINVAL",
            "<invalid>",
        )
        for case, name in (("dot", "."), ("dotdot", ".."), ("newline", "a\nb"), ("long", "x" * 32))
    ),
    (
        "one-bad-instance-of-two",
        lambda: dtb.to_dtb([Instance("h", 11, (2,), MIB), Instance("i", 12, (9,), MIB)]),
        "EINVAL",
        "i",
    ),
]


@pytest.mark.parametrize(("case", "make", "errno", "named"), BAD_DTBS, ids=[c[0] for c in BAD_DTBS])
def test_bad_dtb_is_refused_and_leaves_nothing(
    validation_guest: tuple[Target, Multikernel],
    case: str,
    make: Callable[[], bytes],
    errno: str,
    named: str,
) -> None:
    guest, mk = validation_guest
    free_before = pool_of(mk).free
    guest.check("dmesg -c > /dev/null")
    outcome = mk.upload(make())
    assert outcome.errno == errno, outcome.output
    assert mk.instances() == ["web-server"]
    assert pool_of(mk).free == free_before
    assert mk.status("web-server") == "ready"
    log = [line for line in guest.check("dmesg").splitlines() if "multikernel:" in line]
    assert len(log) == 1, log
    assert f"instance {named}:" in log[0]


def test_mkdir_rmdir_and_privilege(boot: Boot) -> None:
    guest, mk = boot_mk(boot)
    blob = dtb.to_dtb([WEB, DB])
    guest.write_file("/tmp/x.dtb", blob)
    guest.check("chmod 644 /tmp/x.dtb")
    denied = guest.run(f"su nobody -s /bin/sh -c 'cat /tmp/x.dtb > {ROOT}/device_tree'")
    assert mk_errno(denied.output) == "EPERM"
    assert mk.instances() == []

    assert mk.upload(blob).ok
    made = guest.run(f"mkdir {ROOT}/instances/extra")
    assert mk_errno(made.output) == "EPERM"
    assert mk.instances() == ["database", "web-server"]

    free = pool_of(mk).free
    assert mk.remove("database").ok
    assert mk.instances() == ["web-server"]
    assert pool_of(mk).free == free + DB.memory
    assert pool_of(mk).child("database") is None
    # CPUs 2 and 3 are free again: a new instance may take them.
    assert mk.upload(dtb.to_dtb([Instance("again", 2, (2, 3), MIB)])).ok

    assert mk.load(WEB.id).ok
    assert mk.remove("web-server").errno == "EBUSY"
    assert mk.unload(WEB.id).ok
    assert mk.remove("web-server").ok
    assert mk.remove("web-server").errno == "ENOENT"


def mk_errno(output: str) -> str | None:
    from harness.multikernel.mk import errno_name

    return errno_name(output)


def test_load_unload_and_exec_checks(boot: Boot) -> None:
    guest, mk = boot_mk(boot)
    assert mk.upload(dtb.to_dtb([WEB, DB])).ok
    free = pool_of(mk).free
    assert mk.kimages() == []
    assert guest.check("cat /proc/kimage") == "No kimages loaded\n"

    guest.check("dmesg -c > /dev/null")
    assert mk.load(WEB.id, cmdline="console=ttyS1 mkh-test", debug=True).ok
    assert mk.status("web-server") == "loading"
    assert mk.status("database") == "ready"

    rows = mk.kimages()
    assert [(r.mk_id, r.type, r.mode, r.cmdline) for r in rows] == [
        (1, "multikernel", "file", "console=ttyS1 mkh-test")
    ]
    region = pool_of(mk).child("web-server")
    assert region is not None
    assert region.contains(rows[0].start, 1)
    segments = re.findall(
        r"segment\[\d+\]: buf=\S+ bufsz=0x([0-9a-f]+) mem=0x([0-9a-f]+) "
        r"memsz=0x([0-9a-f]+)",
        guest.check("dmesg"),
    )
    assert len(segments) == rows[0].segments >= 3
    for _, mem, memsz in segments:
        assert region.contains(int(mem, 16), int(memsz, 16)), (mem, memsz)

    assert mk.load(WEB.id).errno == "EBUSY"
    assert mk.exec(0).errno == "EINVAL"  # id 0 is no instance
    assert mk.load(77).errno == "ENOENT"
    assert mk.exec(WEB.id).errno == "EBUSY"  # CPU 1 is still online here
    assert mk.exec(DB.id).errno == "EINVAL"  # nothing loaded for database
    assert mk.status("web-server") == "loading"

    # Two instances hold images at once.  A command line prints escaped,
    # so that a row stays one line whatever it holds.
    assert mk.load(DB.id, initrd=None, cmdline='say "hi" a\\b').ok
    assert sorted(r.mk_id for r in mk.kimages()) == [1, 2]
    assert mk.kimages()[1].cmdline == "say \\042hi\\042 a\\134b"

    assert mk.unload(WEB.id).ok
    assert mk.status("web-server") == "ready"
    assert [r.mk_id for r in mk.kimages()] == [2]
    assert mk.unload(DB.id).ok
    assert guest.check("cat /proc/kimage") == "No kimages loaded\n"
    assert pool_of(mk).free == free


def test_failed_loads_leave_the_instance_removable_and_the_pool_whole(boot: Boot) -> None:
    guest, mk = boot_mk(boot)
    free = pool_of(mk).free
    tiny = Instance("tiny", 5, (2,), 0x100000)  # 1 MiB: no kernel fits
    assert mk.upload(dtb.to_dtb([tiny])).ok
    # The command line is copied before the kernel is found not to fit.
    outcome = guest.run(
        "for i in $(seq 50); do mkctl load --id 5 --kernel /boot/bzImage "
        "--cmdline console=ttyS1 2>/dev/null && echo loaded; done; echo done"
    )
    assert outcome.output == "done\n", outcome.output
    assert mk.status("tiny") == "ready"
    assert mk.kimages() == []
    assert mk.remove("tiny").ok
    assert pool_of(mk).free == free  # the instance's memory came back
