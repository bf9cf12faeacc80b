"""Benchmarks: figures measured in one run and reported as ratios."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from harness.build.images import Images
from harness.core import progress
from harness.core.errors import InfraError
from harness.core.rundir import RunDir
from harness.multikernel import phases
from harness.multikernel.dtb import Instance
from harness.multikernel.mk import Multikernel, parse_ping
from harness.target.base import Target
from harness.target.factory import make_target
from harness.target.options import TargetOptions

# The web-server instance of the usage.rst example.
SPAWN_INSTANCE = Instance("web-server", 1, (1,), 0x20000000)
SPAWN_SMP = 4
SPAWN_POOL = 1 << 30
DEBUGFS = "/sys/kernel/debug/multikernel"


@dataclass(frozen=True)
class SpawnSample:
    host_boot: phases.Breakdown  # QEMU start to the host's shell prompt
    spawn: phases.Breakdown  # exec call to the instance's shell prompt
    accel: str  # the accelerator QEMU ran with


@contextmanager
def booted(images: Images, options: TargetOptions, workdir: Path | None = None) -> Iterator[Target]:
    """A target booted for one measurement, its run directory in `workdir` or a scratch one."""
    with ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mkh-bench-")))
        run = stack.enter_context(RunDir(workdir))
        yield stack.enter_context(make_target(images, options, run))


def accel_of(target: Target) -> str:
    """The accelerator a target's QEMU ran with (a lab machine is its own hardware)."""
    return target.debug.accel if target.debug is not None else "lab machine"


def measure_spawn(guest: Target, inst: Instance) -> SpawnSample:
    """Spawn `inst` in a freshly booted guest; the phases of the guest's boot and of the spawn."""
    run = guest.run_dir
    host_total = run.timing("shell-ready") - run.timing("qemu-started")
    host = phases.parse(guest.check(f"cat {DEBUGFS}/boot_tsc"))
    mk = Multikernel(guest, guest.instances)
    shell = mk.spawn(inst)
    started = phases.parse(guest.check(f"cat {DEBUGFS}/start_tsc"))
    booted = phases.parse(shell.check(f"cat {DEBUGFS}/boot_tsc"))
    return SpawnSample(
        phases.breakdown(phases.merge(host), phases.BOOT_PHASES, host_total),
        phases.breakdown(
            phases.merge(started, booted), phases.SPAWN_PHASES, mk.spawn_seconds[inst.name]
        ),
        accel_of(guest),
    )


def spawn_once(images: Images, accel: str, workdir: Path, memory: int) -> SpawnSample:
    options = TargetOptions(
        smp=SPAWN_SMP, memory="2G", append=f"mkkernel_pool={SPAWN_POOL >> 20}M", accel=accel
    )
    with booted(images, options, workdir) as guest:
        return measure_spawn(guest, replace(SPAWN_INSTANCE, memory=memory))


def spawn(
    images: Images, runs: int, accel: str = "auto", memory: int = SPAWN_INSTANCE.memory
) -> list[SpawnSample]:
    samples = []
    with tempfile.TemporaryDirectory(prefix="mkh-bench-") as tmp:
        for n in range(runs):
            samples.append(spawn_once(images, accel, Path(tmp) / f"run{n}", memory))
            progress.note(f"spawn run {n + 1}/{runs}: {samples[-1].spawn.total:.2f}s")
    return samples


@dataclass(frozen=True)
class IpiSample:
    ping_us: list[float]  # mkctl ping host -> instance -> host, user space to user space
    ipi_us: list[float]  # smp_call_function_single() between two host CPUs, in the kernel


def ipi(images: Images, pings: int, accel: str = "auto") -> IpiSample:
    """Ping round trips to an instance and same-kernel IPI round trips, in one guest."""
    options = TargetOptions(smp=3, memory="2G", append="mkkernel_pool=1G", accel=accel)
    with booted(images, options) as guest:
        mk = Multikernel(guest, guest.instances)
        mk.spawn(SPAWN_INSTANCE)
        out = mk.ping(SPAWN_INSTANCE.id, count=pings, size=16)
        Multikernel.must(out, "ping")
        ipi_ns = guest.check("cat /sys/kernel/debug/multikernel/ipi_rtt").split()
        return IpiSample(parse_ping(out.output), [int(ns) / 1000 for ns in ipi_ns])


@dataclass(frozen=True)
class Cycle:
    ping: float  # one ping round trip, s (from the harness)
    halt: float  # graceful halt, s
    start: float  # exec call to the instance's shell prompt, s


@dataclass(frozen=True)
class CycleRun:
    first_spawn: float
    cycles: list[Cycle]
    pool_free_start: int
    pool_free_end: int


def _pool_free(mk: Multikernel) -> int:
    pool = mk.pool()
    if pool is None:
        raise InfraError("the guest has no multikernel pool")
    return pool.free


def cycles(images: Images, runs: int, accel: str = "auto") -> CycleRun:
    """Spawn once, then `runs` times ping, halt and start again; rmdir at the end."""
    options = TargetOptions(smp=2, memory="2G", append="mkkernel_pool=1G", accel=accel)
    inst = SPAWN_INSTANCE
    with booted(images, options) as guest:
        mk = Multikernel(guest, guest.instances)
        free_start = _pool_free(mk)
        mk.spawn(inst)
        first = mk.spawn_seconds[inst.name]
        done = []
        for n in range(runs):
            t0 = time.monotonic()
            Multikernel.must(mk.ping(inst.id, count=1), "ping")
            t1 = time.monotonic()
            Multikernel.must(mk.halt(inst.id), "halt")
            t2 = time.monotonic()
            mk.start(inst)
            done.append(Cycle(t1 - t0, t2 - t1, mk.spawn_seconds[inst.name]))
            progress.note(f"cycle {n + 1}/{runs}: {sum(vars(done[-1]).values()):.2f}s")
        Multikernel.must(mk.halt(inst.id), "halt")
        Multikernel.must(mk.unload(inst.id), "unload")
        Multikernel.must(mk.remove(inst.name), "rmdir")
        return CycleRun(first, done, free_start, _pool_free(mk))
