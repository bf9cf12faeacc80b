"""`mkh bench overlay`: a CPU and 128 MiB added to and taken from a running instance.

One run: the guest boots, an instance starts on CPU 1 and the host takes
CPU 2 offline.  Each cycle then times, inside the host (so no console
round trip counts), a CPU brought online and taken offline by the host
itself, and the same CPU added to the running instance by an overlay and
taken back by its rollback, then 128 MiB the same way.  The ping round
trip, measured alongside, is what the two messages of each step cost: the
rest is the instance's kernel doing the step and the host's part.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass

from harness.bench.measure import accel_of, booted
from harness.build.images import Images
from harness.core import progress
from harness.multikernel import overlay as ov
from harness.multikernel.dtb import Instance
from harness.multikernel.mk import ROOT, Multikernel, parse_ping
from harness.target.base import Target
from harness.target.options import TargetOptions

INSTANCE = Instance("web-server", 1, (1,), 256 << 20)
CPU = 2
BLOCK = 128 << 20  # a memory block of the instance's kernel (x86-64)
STAGED = "/tmp/mkh-bench.dtbo"


@dataclass(frozen=True)
class OverlayCycle:
    host_online: float  # s, echo 1 > cpuN/online in the host
    host_offline: float
    cpu_add: float  # s, the overlay's write(2): the CPU online in the instance
    cpu_remove: float  # its rollback: offline there, stopped and back in the host
    memory_add: float  # 128 MiB hot-added and onlined in the instance
    memory_remove: float  # offlined, removed, cleared and back in the pool


@dataclass(frozen=True)
class OverlayRun:
    cycles: list[OverlayCycle]
    ping_us: float  # median ping round trip to the instance, user space to user space
    accel: str


_CLOCK = re.compile(r"tv_sec:\s*(\d+)\s+time\.tv_usec:\s*(\d+)")


def timed(guest: Target, command: str) -> float:
    """Seconds `command` takes in the guest, by its clock read just before and after.

    busybox's date has no %N; adjtimex prints the time in microseconds.
    """
    out = guest.check(f"adjtimex; {{ {command}; }} >/dev/null; adjtimex")
    (s0, u0), (s1, u1) = ((int(s), int(u)) for s, u in _CLOCK.findall(out)[-2:])
    return (s1 - s0) + (u1 - u0) / 1e6


def _overlay_cycle(guest: Target, mk: Multikernel, blob: bytes) -> tuple[float, float]:
    """Seconds of an overlay's write and of its rollback, each timed in the guest."""
    guest.write_file(STAGED, blob)
    before = {tx.id for tx in mk.transactions()}
    applied = timed(guest, f"dd if={STAGED} of={ROOT}/overlays/new bs=1M")
    [tx] = [tx for tx in mk.transactions() if tx.id not in before]
    return applied, timed(guest, f"rmdir {tx.path}")


def run(images: Images, cycles: int, accel: str = "auto") -> OverlayRun:
    options = TargetOptions(smp=3, memory="2G", append="mkkernel_pool=1G", accel=accel)
    target = f"/instances/{INSTANCE.name}"
    cpu = ov.compile_dts(ov.source(ov.fragment(target, ov.cpu_op("cpu-add", CPU))))
    memory = ov.compile_dts(ov.source(ov.fragment(target, ov.memory_add(BLOCK))))
    online = f"/sys/devices/system/cpu/cpu{CPU}/online"
    with booted(images, options) as guest:
        mk = Multikernel(guest, guest.instances)
        mk.spawn(INSTANCE)
        guest.check(f"echo 0 > {online}")
        done = []
        for n in range(cycles):
            host_on = timed(guest, f"echo 1 > {online}")
            host_off = timed(guest, f"echo 0 > {online}")
            cpu_add, cpu_remove = _overlay_cycle(guest, mk, cpu)
            mem_add, mem_remove = _overlay_cycle(guest, mk, memory)
            done.append(OverlayCycle(host_on, host_off, cpu_add, cpu_remove, mem_add, mem_remove))
            progress.note(f"overlay cycle {n + 1}/{cycles}: {sum(vars(done[-1]).values()):.2f}s")
        pings = mk.ping(INSTANCE.id, count=50)
        Multikernel.must(pings, "ping")
        return OverlayRun(done, statistics.median(parse_ping(pings.output)), accel_of(guest))
