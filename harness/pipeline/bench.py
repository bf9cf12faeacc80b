"""`mkh bench` from its request: the instance checked, images, the measurement, its table."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from harness.bench import density, measure, overlay, update
from harness.build import images
from harness.build.images import KernelChoice
from harness.core.errors import InfraError
from harness.core.progress import note
from harness.multikernel import dtb
from harness.report import bench as bench_report
from harness.target.options import MAX_SMP

# Runs of each benchmark unless asked (density and update are one run and take none).
RUNS = {"spawn": 3, "cycles": 10, "ipi": 200, "density": 1, "update": 1, "overlay": 5}


@dataclass(frozen=True)
class BenchRequest:
    what: str  # spawn, ipi, cycles, density, update or overlay
    kernel: KernelChoice
    accel: str = "auto"
    runs: int | None = None  # None: RUNS[what]
    memory: int | None = None  # an instance's memory (spawn, density); None: the default
    cpus: int | None = None  # the guest's CPUs (density); None: density.DEFAULT_CPUS


def instance_memory(request: BenchRequest) -> int:
    """The instance memory of `bench spawn|density`, refused before anything is built."""
    if request.what == "density":
        memory = density.DEFAULT_MEMORY if request.memory is None else request.memory
        cpus = density.DEFAULT_CPUS if request.cpus is None else request.cpus
        if not 2 <= cpus <= MAX_SMP:
            raise InfraError(f"--cpus {cpus}: 2 to {MAX_SMP} (the host keeps CPU 0)")
        if memory < density.SMALLEST_FLOOR:
            floor = density.SMALLEST_FLOOR >> 20
            raise InfraError(f"--memory {memory}: below {floor}M, where the search stops")
        instances = [dtb.Instance(f"dense{n}", n, (n,), memory) for n in range(1, cpus)]
        budget = dtb.Budget(cpus=cpus)
    else:
        memory = measure.SPAWN_INSTANCE.memory if request.memory is None else request.memory
        instances = [dataclasses.replace(measure.SPAWN_INSTANCE, memory=memory)]
        budget = dtb.Budget(cpus=measure.SPAWN_SMP, pool_free=measure.SPAWN_POOL)
    problems = dtb.check(dtb.to_dtb(instances), budget)
    if problems:
        raise InfraError(f"--memory {memory}: " + "; ".join(str(p) for p in problems))
    return memory


@dataclass(frozen=True)
class BenchReport:
    table: str  # for a terminal
    figures: dict[str, object] | None  # for CI (spawn and density)

    def write_json(self, path: Path) -> None:
        path.write_text(json.dumps(self.figures, indent=1) + "\n")
        note(f"wrote {path}")


def bench(request: BenchRequest) -> BenchReport:
    """Measure; the figures as a table and, for spawn and density, as JSON."""
    memory = instance_memory(request)
    built = images.resolve(request.kernel)
    runs = request.runs or RUNS[request.what]
    if request.what == "density":
        cpus = density.DEFAULT_CPUS if request.cpus is None else request.cpus
        measured = density.run(built, cpus, memory, request.accel)
        return BenchReport(
            bench_report.density_table(measured), bench_report.density_json(measured)
        )
    if request.what == "update":
        return BenchReport(bench_report.update_table(update.run(built, request.accel)), None)
    if request.what == "overlay":
        resized = overlay.run(built, runs, request.accel)
        return BenchReport(bench_report.overlay_table(resized), None)
    if request.what == "ipi":
        return BenchReport(bench_report.ipi_table(measure.ipi(built, runs, request.accel)), None)
    if request.what == "cycles":
        cycles = measure.cycles(built, runs, request.accel)
        return BenchReport(bench_report.cycles_table(cycles), None)
    samples = measure.spawn(built, runs, request.accel, memory)
    return BenchReport(bench_report.spawn_table(samples), bench_report.spawn_json(samples, memory))
