"""`mkh dtb compile|check|show|overlay FILE`: multikernel device trees and overlays."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli import args as common
from harness.core.errors import InfraError
from harness.multikernel import dtb
from harness.pipeline.dtb import DtbRequest, device_tree

ACTIONS = {
    "compile": "check a .dts and write it as a DTB",
    "check": "check a .dts or .dtb as the kernel would (EINVAL with the reason)",
    "show": "print each instance's device tree source as the kernel shows it",
    "overlay": "check an overlay .dts (instance-create, cpu-add, ...) and write it as a .dtbo",
}


def cmd_dtb(args: argparse.Namespace) -> int:
    existing = _instances(args.instances) if args.instances else None
    budget = dtb.Budget(cpus=args.cpus, pool_free=args.pool, existing=existing)
    report = device_tree(DtbRequest(args.action, args.file, budget, args.output))
    for name, source in report.sources:
        print(f"# instances/{name}/device_tree_source")
        print(source)
    if report.written is not None:
        print(report.written)
    return common.report(report.problems)


def _instances(path: Path) -> list[dtb.Instance]:
    """The instances a .dts or .dtb creates, for --instances."""
    try:
        return dtb.parse(dtb.load(path))[0]
    except (dtb.DtbError, dtb.DtsError) as exc:
        raise InfraError(f"--instances {path}: {exc}") from None


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "dtb", help="compile, check or show a multikernel device tree; check and compile an overlay"
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, about in ACTIONS.items():
        one = actions.add_parser(action, help=about, description=about)
        kind = "an overlay .dts, or a .dtbo" if action == "overlay" else "a .dts file or a .dtb"
        one.add_argument("file", type=Path, help=kind)
        one.add_argument("--cpus", type=int, help="check CPU ids against this many CPUs")
        one.add_argument(
            "--pool",
            type=common.size,
            metavar="SIZE",
            help="check memory against this much free pool (e.g. 2G)",
        )
        one.add_argument(
            "--instances",
            type=common.existing_file,
            metavar="FILE",
            help="the instances there already, as the .dts or .dtb that created them",
        )
        one.set_defaults(func=cmd_dtb, output=None)
    actions.choices["compile"].add_argument(
        "-o", "--output", type=Path, help="where to write the DTB (default: FILE.dtb)"
    )
    actions.choices["overlay"].add_argument(
        "-o", "--output", type=Path, help="where to write the DTBO (default: FILE.dtbo)"
    )
