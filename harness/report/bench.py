"""The benchmarks' tables for people and their figures as JSON for CI."""

from __future__ import annotations

import statistics
from dataclasses import asdict

from harness.bench.density import MIB, DensityRun
from harness.bench.measure import CycleRun, IpiSample, SpawnSample
from harness.bench.overlay import OverlayRun
from harness.bench.update import UpdateRun
from harness.multikernel import phases


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


def spawn_table(samples: list[SpawnSample]) -> str:
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


def ipi_table(sample: IpiSample) -> str:
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


def cycles_table(run: CycleRun) -> str:
    per = [c.ping + c.halt + c.start for c in run.cycles]
    lines = [f"{'cycle':>5} {'ping (s)':>9} {'halt (s)':>9} {'start (s)':>10} {'total (s)':>10}"]
    for n, (c, total) in enumerate(zip(run.cycles, per, strict=True), start=1):
        lines.append(f"{n:>5} {c.ping:>9.2f} {c.halt:>9.2f} {c.start:>10.2f} {total:>10.2f}")
    halt = statistics.median(c.halt for c in run.cycles)
    start = statistics.median(c.start for c in run.cycles)
    lines.append(
        f"median cycle {statistics.median(per):.2f}s (halt {halt:.2f}s, start {start:.2f}s);"
        f" start again / first spawn ratio {start / run.first_spawn:.2f}"
    )
    lines.append(
        f"pool free: {run.pool_free_start} bytes at the start, "
        f"{run.pool_free_end} at the end"
        + ("" if run.pool_free_start == run.pool_free_end else "  <-- LEAK")
    )
    return "\n".join(lines)


def density_table(run: DensityRun) -> str:
    """The table: instances, start times, memory, host latency as ratios to the quiet host."""
    count = run.cpus - 1
    per = run.spawn_seconds
    kib = 1024
    rows = [
        ("instances started", f"{count} of {count} (1 CPU each, host on CPU 0; {run.accel})"),
        (
            "time to start all",
            f"{run.all_started:.1f} s (per instance: median {statistics.median(per):.2f} s, "
            f"min {min(per):.2f}, max {max(per):.2f})",
        ),
        ("memory per instance", f"{run.memory // MIB} MiB"),
        ("  pool stride", f"{run.pool_stride // kib} KiB (2 MiB-aligned starts)"),
        ("  shared area", "108 KiB at its top: 8 KiB message rings, 100 KiB console and log"),
        (
            "  its kernel sees",
            f"MemTotal {run.instance_memtotal // kib} KiB, "
            f"MemAvailable {run.instance_memfree // kib} KiB once booted",
        ),
        ("  host RAM per instance", f"{run.host_bytes_per_instance // kib} KiB (image copy)"),
    ]
    if run.smallest is not None:
        rows.append(
            (
                "smallest that boots",
                f"{run.smallest.memory // MIB} MiB; a MiB less: {run.smallest.below}",
            )
        )
    quiet = statistics.median(run.latency["no instance"])
    for situation, times in run.latency.items():
        median = statistics.median(times)
        rows.append(
            (
                f"host command, {situation}",
                f"{median * 1000:.1f} ms median of {len(times)} ({median / quiet:.2f}x quiet)",
            )
        )
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def density_json(run: DensityRun) -> dict[str, object]:
    return asdict(run)


def update_table(run: UpdateRun) -> str:
    row = "{:<56} {:>8.2f}"
    lines = [
        f"{'':<56} {'seconds':>8}  ({run.accel})",
        row.format("full host boot (QEMU start to the shell)", run.boot),
        row.format("putting the next kernel and initramfs in place", run.stage),
        row.format("host downtime (last answer of the old host to the new)", run.downtime),
        row.format(f"the instance's longest gap between ticks ({run.ticks})", run.gap),
        f"downtime/full boot ratio {run.downtime / run.boot:.2f}; instance gap/full boot "
        f"ratio {run.gap / run.boot:.2f}: the instance runs on while its host is replaced",
    ]
    return "\n".join(lines)


def overlay_table(run: OverlayRun) -> str:
    """Each step's median next to the host's own CPU online/offline, as ratios."""
    median = {
        name: statistics.median(getattr(c, name) for c in run.cycles)
        for name in vars(run.cycles[0])
    }
    online, offline = median["host_online"], median["host_offline"]
    row = "{:<52} {:>9.1f} {:>8}"
    lines = [
        f"{'':<52} {'ms':>9} {'ratio':>8}  (median of {len(run.cycles)}, {run.accel})",
        row.format("host: CPU online", online * 1e3, "1.00"),
        row.format("host: CPU offline", offline * 1e3, "1.00"),
        row.format(
            "instance: cpu-add (online there)",
            median["cpu_add"] * 1e3,
            f"{median['cpu_add'] / online:.2f}",
        ),
        row.format(
            "instance: cpu-add rolled back (offline, stopped)",
            median["cpu_remove"] * 1e3,
            f"{median['cpu_remove'] / offline:.2f}",
        ),
        row.format(
            "instance: memory-add 128 MiB (hot-added, onlined)",
            median["memory_add"] * 1e3,
            f"{median['memory_add'] / online:.2f}",
        ),
        row.format(
            "instance: memory-add rolled back (offlined, cleared)",
            median["memory_remove"] * 1e3,
            f"{median['memory_remove'] / offline:.2f}",
        ),
        f"ratios: to the host's CPU online (adds) and offline (removes); each step is a "
        f"message each way, about one ping ({run.ping_us:.0f} us median), the rest is the "
        "instance's kernel doing it and the host's write(2) or rmdir(2)",
    ]
    return "\n".join(lines)
