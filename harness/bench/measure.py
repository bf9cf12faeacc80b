"""Benchmarks: figures measured in one run and reported as ratios."""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from harness.build.images import Images
from harness.core import progress
from harness.core.errors import InfraError
from harness.core.rundir import RunDir
from harness.multikernel import phases
from harness.multikernel.dtb import Instance
from harness.multikernel.mk import Multikernel, parse_ping
from harness.target.qemu import Guest, GuestOptions

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


def measure_spawn(guest: Guest, inst: Instance) -> SpawnSample:
    """Spawn `inst` in a freshly booted guest; the phases of the guest's boot and of the spawn."""
    if guest.machine is None:
        raise InfraError("the guest is not running")
    run = guest.run_dir
    host_total = run.timing("shell-ready") - run.timing("qemu-started")
    host = phases.parse(guest.check(f"cat {DEBUGFS}/boot_tsc"))
    mk = Multikernel(guest)
    shell = mk.spawn(inst)
    started = phases.parse(guest.check(f"cat {DEBUGFS}/start_tsc"))
    booted = phases.parse(shell.check(f"cat {DEBUGFS}/boot_tsc"))
    return SpawnSample(
        phases.breakdown(phases.merge(host), phases.BOOT_PHASES, host_total),
        phases.breakdown(
            phases.merge(started, booted), phases.SPAWN_PHASES, mk.spawn_seconds[inst.name]
        ),
        guest.machine.accel,
    )


def spawn_once(images: Images, accel: str, workdir: Path, memory: int) -> SpawnSample:
    options = GuestOptions(
        smp=SPAWN_SMP, memory="2G", append=f"mkkernel_pool={SPAWN_POOL >> 20}M", accel=accel
    )
    with RunDir(workdir) as run, Guest(images, options, run) as guest:
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


def _median_phases(runs: list[phases.Breakdown]) -> dict[str, float]:
    return {name: statistics.median(r.phases[name] for r in runs) for name in runs[0].phases}


def spawn_ratio(samples: list[SpawnSample], stamped: bool = False) -> float:
    """Median spawn over median host boot, both measured in the same run.

    By the harness's clock (typing the exec command to the instance's first
    answer, QEMU start to the host's), or `stamped`: exec call to the instance's
    shell over machine reset to the host's shell, as the kernels stamped them.
    """

    def seconds(b: phases.Breakdown) -> float:
        return b.stamped if stamped else b.total

    spawn_median = statistics.median(seconds(s.spawn) for s in samples)
    return spawn_median / statistics.median(seconds(s.host_boot) for s in samples)


def report(samples: list[SpawnSample]) -> str:
    """Each phase per run and its median, for the host's boot and for the spawn."""
    heads = "".join(f"{f'run {n}':>8}" for n in range(1, len(samples) + 1))
    lines = [f"{'phase (s)':<38}{heads}{'median':>8}"]
    for title, runs in (
        ("host boot: QEMU start to its shell", [s.host_boot for s in samples]),
        ("spawn: exec call to the instance's shell", [s.spawn for s in samples]),
    ):
        lines.append(title)
        medians = _median_phases(runs)
        for name, median in medians.items():
            cells = "".join(f"{r.phases[name]:>8.3f}" for r in runs)
            lines.append(f"  {name:<36}{cells}{median:>8.3f}")
        for name, values in (
            ("stamped (first to last stamp)", [r.stamped for r in runs]),
            ("total", [r.total for r in runs]),
        ):
            cells = "".join(f"{v:>8.3f}" for v in values)
            lines.append(f"  {name:<36}{cells}{statistics.median(values):>8.3f}")
    accels = ", ".join(sorted({s.accel for s in samples}))
    lines.append(
        f"spawn/boot ratio of the medians {spawn_ratio(samples):.2f} ({accels}); "
        f"of the stamped medians {spawn_ratio(samples, stamped=True):.2f}"
    )
    return "\n".join(lines)


def spawn_json(samples: list[SpawnSample], memory: int) -> dict[str, object]:
    """The same figures for CI: every run, the medians and the ratio."""
    return {
        "accel": sorted({s.accel for s in samples}),
        "instance_memory": memory,
        "runs": [{"host_boot": vars(s.host_boot), "spawn": vars(s.spawn)} for s in samples],
        "median": {
            "host_boot": _median_phases([s.host_boot for s in samples]),
            "spawn": _median_phases([s.spawn for s in samples]),
        },
        "ratio": spawn_ratio(samples),
        "stamped_ratio": spawn_ratio(samples, stamped=True),
    }


def _stats(values: list[float]) -> tuple[float, float, float]:
    """(min, median, p99) of `values`."""
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return ordered[0], statistics.median(ordered), p99


@dataclass(frozen=True)
class IpiSample:
    ping_us: list[float]  # mkctl ping host -> instance -> host, user space to user space
    ipi_us: list[float]  # smp_call_function_single() between two host CPUs, in the kernel


def ipi(images: Images, pings: int, accel: str = "auto") -> IpiSample:
    """Ping round trips to an instance and same-kernel IPI round trips, in one guest."""
    options = GuestOptions(smp=3, memory="2G", append="mkkernel_pool=1G", accel=accel)
    with (
        tempfile.TemporaryDirectory(prefix="mkh-bench-") as tmp,
        RunDir(Path(tmp)) as run,
        Guest(images, options, run) as guest,
    ):
        mk = Multikernel(guest)
        mk.spawn(SPAWN_INSTANCE)
        out = mk.ping(SPAWN_INSTANCE.id, count=pings, size=16)
        Multikernel.must(out, "ping")
        ipi_ns = guest.check("cat /sys/kernel/debug/multikernel/ipi_rtt").split()
        return IpiSample(parse_ping(out.output), [int(ns) / 1000 for ns in ipi_ns])


def ipi_report(sample: IpiSample) -> str:
    ping = _stats(sample.ping_us)
    base = _stats(sample.ipi_us)
    row = "{:<34} {:>9.1f} {:>9.1f} {:>9.1f}"
    lines = [
        f"{'':<34} {'min':>9} {'median':>9} {'p99':>9}  (us)",
        row.format("ping to an instance (user space)", *ping),
        row.format("IPI round trip in the host kernel", *base),
        f"ping/IPI median ratio {ping[1] / base[1]:.1f} over {len(sample.ping_us)} pings and "
        f"{len(sample.ipi_us)} IPIs; a ping adds two ring messages, the ioctl and the "
        "wakeup of the pinging task to the two IPIs",
    ]
    return "\n".join(lines)


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
    options = GuestOptions(smp=2, memory="2G", append="mkkernel_pool=1G", accel=accel)
    inst = SPAWN_INSTANCE
    with (
        tempfile.TemporaryDirectory(prefix="mkh-bench-") as tmp,
        RunDir(Path(tmp)) as run,
        Guest(images, options, run) as guest,
    ):
        mk = Multikernel(guest)
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


def cycles_report(result: CycleRun) -> str:
    per = [c.ping + c.halt + c.start for c in result.cycles]
    lines = [f"{'cycle':>5} {'ping (s)':>9} {'halt (s)':>9} {'start (s)':>10} {'total (s)':>10}"]
    for n, (c, total) in enumerate(zip(result.cycles, per, strict=True), start=1):
        lines.append(f"{n:>5} {c.ping:>9.2f} {c.halt:>9.2f} {c.start:>10.2f} {total:>10.2f}")
    halt = statistics.median(c.halt for c in result.cycles)
    start = statistics.median(c.start for c in result.cycles)
    lines.append(
        f"median cycle {statistics.median(per):.2f}s (halt {halt:.2f}s, start {start:.2f}s);"
        f" start again / first spawn ratio {start / result.first_spawn:.2f}"
    )
    lines.append(
        f"pool free: {result.pool_free_start} bytes at the start, "
        f"{result.pool_free_end} at the end"
        + ("" if result.pool_free_start == result.pool_free_end else "  <-- LEAK")
    )
    return "\n".join(lines)
