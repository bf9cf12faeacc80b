"""`mkh bench spawn|ipi|cycles|density`: each benchmark a subcommand with only its own options."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from harness.bench import density, measure
from harness.build import images
from harness.cli import args as common
from harness.core.errors import InfraError
from harness.core.progress import note
from harness.multikernel import dtb
from harness.report import bench as bench_report

BENCHMARKS = {
    "spawn": "exec call to instance shell vs QEMU start to host shell",
    "cycles": "ping, halt and start again, per cycle, with the pool's free bytes",
    "ipi": "ping round trip to an instance vs an IPI round trip inside the host",
    "density": "an instance on every CPU but the host's, over their consoles over shared "
    "memory: start time, memory, host latency, smallest instance memory",
}
# --runs when not given (density is one run and takes none).
RUNS = {"spawn": 3, "cycles": 10, "ipi": 200, "density": 1}
RUNS_MEANING = {
    "spawn": "runs to take the median of",
    "cycles": "cycles",
    "ipi": "pings",
}


def _bench_checks(args: argparse.Namespace) -> int:
    """The instance memory of `bench spawn|density`, refused before anything is built."""
    if args.what == "density":
        memory = density.DEFAULT_MEMORY if args.memory is None else args.memory
        cpus = density.DEFAULT_CPUS if args.cpus is None else args.cpus
        if not 2 <= cpus <= common.MAX_SMP:
            raise InfraError(f"--cpus {cpus}: 2 to {common.MAX_SMP} (the host keeps CPU 0)")
        if memory < density.SMALLEST_FLOOR:
            floor = density.SMALLEST_FLOOR >> 20
            raise InfraError(f"--memory {memory}: below {floor}M, where the search stops")
        instances = [dtb.Instance(f"dense{n}", n, (n,), memory) for n in range(1, cpus)]
        target = dtb.Target(cpus=cpus)
    else:
        memory = measure.SPAWN_INSTANCE.memory if args.memory is None else args.memory
        instances = [dataclasses.replace(measure.SPAWN_INSTANCE, memory=memory)]
        target = dtb.Target(cpus=measure.SPAWN_SMP, pool_free=measure.SPAWN_POOL)
    problems = dtb.check(dtb.to_dtb(instances), target)
    if problems:
        raise InfraError(f"--memory {memory}: " + "; ".join(str(p) for p in problems))
    return memory


def cmd_bench(args: argparse.Namespace) -> int:
    memory = _bench_checks(args)
    built = images.resolve(common.kernel_choice(args))
    runs = args.runs or RUNS[args.what]
    if args.what == "density":
        cpus = density.DEFAULT_CPUS if args.cpus is None else args.cpus
        measured = density.run(built, cpus, memory, args.accel)
        print(bench_report.density_table(measured))
        if args.json is not None:
            args.json.write_text(json.dumps(bench_report.density_json(measured), indent=1) + "\n")
            note(f"wrote {args.json}")
    elif args.what == "ipi":
        print(bench_report.ipi_table(measure.ipi(built, runs, args.accel)))
    elif args.what == "cycles":
        print(bench_report.cycles_table(measure.cycles(built, runs, args.accel)))
    else:
        samples = measure.spawn(built, runs, args.accel, memory)
        print(bench_report.spawn_table(samples))
        if args.json is not None:
            figures = bench_report.spawn_json(samples, memory)
            args.json.write_text(json.dumps(figures, indent=1) + "\n")
            note(f"wrote {args.json}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("bench", help="benchmarks (ratios measured in one run)")
    benches = parser.add_subparsers(dest="what", required=True, metavar="BENCHMARK")
    for what, about in BENCHMARKS.items():
        one = benches.add_parser(what, help=about, description=about)
        one.add_argument("--accel", choices=common.ACCELS, default="auto")
        common.add_kernel_choice(one)
        one.set_defaults(func=cmd_bench, runs=None, memory=None, cpus=None, json=None)
        if what != "density":
            one.add_argument(
                "--runs",
                type=common.positive,
                help=f"{RUNS_MEANING[what]} (default {RUNS[what]})",
            )
        if what in ("spawn", "density"):
            one.add_argument(
                "--json", type=Path, metavar="FILE", help="also write the figures as JSON"
            )
    benches.choices["spawn"].add_argument(
        "--memory",
        type=common.size,
        metavar="SIZE",
        help="the instance's memory (default 512M, the usage.rst web-server)",
    )
    benches.choices["density"].add_argument(
        "--memory",
        type=common.size,
        metavar="SIZE",
        help=f"each instance's memory, where the search for the smallest starts "
        f"(default {density.DEFAULT_MEMORY >> 20}M)",
    )
    benches.choices["density"].add_argument(
        "--cpus",
        type=common.positive,
        help=f"the guest's CPUs, one instance on each but CPU 0 (default {density.DEFAULT_CPUS})",
    )
