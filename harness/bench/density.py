"""`mkh bench density`: an instance on every CPU but the host's, all reached over mkcon.

One guest of `cpus` CPUs (SSH transport: instances' consoles go through the
host's connection).  First the smallest instance memory that boots to a
shell is searched for on CPU 1, a MiB at a time down from the density
size, until the kernel refuses the load or the kernel dies.  Then one
single-CPU instance per remaining CPU is started, each on its console over
shared memory, and answers a token.  The host's command latency is measured
with no instance, with all of them idle, and with all of them spinning;
the memory figures come from the host's pool and MemAvailable and from
what each instance's kernel sees.
"""

from __future__ import annotations

import itertools
import re
import statistics
import time
from dataclasses import dataclass

from harness.bench.measure import accel_of, booted
from harness.build.images import Images
from harness.core import progress
from harness.core.errors import HarnessError
from harness.multikernel import dtb, mkcon
from harness.multikernel import pool as pool_sizing
from harness.multikernel.mk import MKCON, Multikernel, Region
from harness.target.base import Target
from harness.target.options import TargetOptions
from harness.target.protocol import CommandProtocol

MIB = 1 << 20
DEFAULT_CPUS = 8
# Where the search for the smallest instance memory starts, and what each
# density instance gets unless told (the seven-instance test in
# tests/qemu/test_mkcon.py boots at it).  What the search finds depends on
# the kernel and initramfs: the measured figures are in docs/performance.md
# (The smallest instance).
DEFAULT_MEMORY = 25 * MIB
SMALLEST_FLOOR = 8 * MIB
LATENCY_SAMPLES = 20
PROBE_ID = 2047  # the search's instance, out of the way of the density ones
PROBE_TIMEOUT = 60.0


@dataclass(frozen=True)
class Smallest:
    memory: int  # the smallest size that booted to a shell
    below: str  # what happened one MiB below it


@dataclass(frozen=True)
class DensityRun:
    accel: str
    cpus: int
    memory: int
    smallest: Smallest | None
    spawn_seconds: list[float]  # exec call to shell, per instance
    all_started: float  # first exec call to the last shell, s
    pool_stride: int  # pool bytes between consecutive instances' starts
    instance_memtotal: int  # bytes, MemTotal inside an instance
    instance_memfree: int  # bytes, MemAvailable inside an instance once booted
    host_bytes_per_instance: int  # host MemAvailable lost per loaded instance
    latency: dict[str, list[float]]  # host command round trips, s, per situation


def _mem_available(commands: CommandProtocol) -> int:
    """MemAvailable in bytes, as /proc/meminfo of that kernel says."""
    match = re.search(r"^MemAvailable:\s+(\d+) kB", commands.check("cat /proc/meminfo"), re.M)
    if match is None:
        raise HarnessError("no MemAvailable in /proc/meminfo")
    return int(match.group(1)) * 1024


def _mem_total(shell: CommandProtocol) -> int:
    match = re.search(r"^MemTotal:\s+(\d+) kB", shell.check("cat /proc/meminfo"), re.M)
    if match is None:
        raise HarnessError("no MemTotal in /proc/meminfo")
    return int(match.group(1)) * 1024


def _latency(guest: Target, samples: int = LATENCY_SAMPLES) -> list[float]:
    """Round trips of an empty host command, in seconds."""
    times = []
    for _ in range(samples):
        start = time.monotonic()
        guest.check(":")
        times.append(time.monotonic() - start)
    return times


def _probe(guest: Target, mk: Multikernel, memory: int) -> str | None:
    """Boot an instance of `memory` bytes on CPU 1; None once its shell answers, else why not."""
    inst = dtb.Instance("probe", PROBE_ID, (1,), memory)
    try:
        shell = mk.spawn(inst, console=MKCON, timeout=PROBE_TIMEOUT)
        shell.check("echo probe-ok")
        why = None
    except HarnessError as exc:
        why = str(exc).splitlines()[0]
        if "E2BIG" in why:  # the kernel's own words on what the instance lacks
            said = guest.check("dmesg | grep 'cannot hold' | tail -n 1").strip()
            why = re.sub(r"^\[[^]]*\] ", "", said) or why
        console = guest.instances.relayed.get(mkcon.name(PROBE_ID))
        if console is not None:
            console.take_crash(watch=False)  # the probe's death is the answer, not a failure
    mk.halt(PROBE_ID, force=True)
    mk.unload(PROBE_ID)
    mk.must(mk.remove(inst.name), "removing the probe instance")
    return why


def smallest(guest: Target, mk: Multikernel, start: int) -> Smallest | None:
    """Down from `start` a MiB at a time: the last size that booted, and why the next did not."""
    good = None
    memory = start
    while memory >= SMALLEST_FLOOR:
        progress.note(f"density: does a {memory // MIB} MiB instance boot?")
        why = _probe(guest, mk, memory)
        if why is not None:
            return Smallest(good, why) if good is not None else None
        good = memory
        memory -= MIB
    return Smallest(good, "not tried (the floor)") if good is not None else None


def pool_stride(regions: list[Region]) -> int:
    """Bytes of pool each instance takes: the median step between their starts (one: its size)."""
    starts = sorted(region.start for region in regions)
    steps = [b - a for a, b in itertools.pairwise(starts)]
    if steps:
        return int(statistics.median(steps))
    return regions[0].size if regions else 0


def run(images: Images, cpus: int, memory: int, accel: str = "auto") -> DensityRun:
    count = cpus - 1
    instances = [dtb.Instance(f"dense{n}", n, (n,), memory) for n in range(1, cpus)]
    pool = pool_sizing.size(memory * count, headroom=64 * MIB)
    options = TargetOptions(
        smp=cpus,
        memory=pool_sizing.guest_memory(pool, host=1536 * MIB),
        append=pool_sizing.append(pool),
        accel=accel,
        transport="ssh",
    )
    with booted(images, options) as guest:
        mk = Multikernel(guest, guest.instances)
        found = smallest(guest, mk, memory)
        quiet = _latency(guest)
        before = _mem_available(guest)
        mk.must(mk.upload(dtb.to_dtb(instances)), "creating the instances")
        shells = []
        started = time.monotonic()
        for inst in instances:
            shells.append(mk.spawn(inst, console=MKCON))
            progress.note(f"density: {len(shells)}/{count} started")
        all_started = time.monotonic() - started
        for inst, shell in zip(instances, shells, strict=True):
            answer = shell.check(f"echo {inst.name}-$(({inst.id} * 7919))").strip()
            if answer != f"{inst.name}-{inst.id * 7919}":
                raise HarnessError(f"{inst.name} answered {answer!r}")
        host_per_instance = (before - _mem_available(guest)) // count
        idle = _latency(guest)
        for shell in shells:
            shell.check("while :; do :; done > /dev/null 2>&1 &")
        busy = _latency(guest)
        pool_map = mk.pool()
        stride = pool_stride(
            [c for c in (pool_map.children if pool_map else ()) if c.name.startswith("dense")]
        )
        return DensityRun(
            accel=accel_of(guest),
            cpus=cpus,
            memory=memory,
            smallest=found,
            spawn_seconds=[mk.spawn_seconds[inst.name] for inst in instances],
            all_started=all_started,
            pool_stride=stride,
            instance_memtotal=_mem_total(shells[0]),
            instance_memfree=_mem_available(shells[0]),
            host_bytes_per_instance=host_per_instance,
            latency={"no instance": quiet, f"{count} idle": idle, f"{count} spinning": busy},
        )
