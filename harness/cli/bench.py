"""`mkh bench spawn|ipi|cycles|density|update|overlay`: a subcommand each, with its own options."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.bench import density
from harness.cli import args as common
from harness.pipeline.bench import RUNS, BenchRequest, bench

BENCHMARKS = {
    "spawn": "exec call to instance shell vs QEMU start to host shell",
    "cycles": "ping, halt and start again, per cycle, with the pool's free bytes",
    "ipi": "ping round trip to an instance vs an IPI round trip inside the host",
    "density": "an instance on every CPU but the host's, over their consoles over shared "
    "memory: start time, memory, host latency, smallest instance memory",
    "update": "a host live update with an instance running: the host's downtime and the "
    "instance's longest gap, vs a full host boot",
    "overlay": "a CPU and 128 MiB added to and taken from a running instance by overlays, "
    "vs a CPU brought online and offline in the host",
}
RUNS_MEANING = {
    "spawn": "runs to take the median of",
    "cycles": "cycles",
    "ipi": "pings",
    "overlay": "cycles",
}


def cmd_bench(args: argparse.Namespace) -> int:
    request = BenchRequest(
        args.what, common.kernel_choice(args), args.accel, args.runs, args.memory, args.cpus
    )
    report = bench(request)
    print(report.table)
    if args.json is not None:
        report.write_json(args.json)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("bench", help="benchmarks (ratios measured in one run)")
    benches = parser.add_subparsers(dest="what", required=True, metavar="BENCHMARK")
    for what, about in BENCHMARKS.items():
        one = benches.add_parser(what, help=about, description=about)
        one.add_argument("--accel", choices=common.ACCELS, default="auto")
        common.add_kernel_choice(one)
        one.set_defaults(func=cmd_bench, runs=None, memory=None, cpus=None, json=None)
        if what not in ("density", "update"):
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
