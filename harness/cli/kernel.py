"""`mkh build`, `mkh kernel-tree`, `mkh series-check`, `mkh export-patches`: the kernel."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.build import source
from harness.cli import args as common
from harness.core.progress import note
from harness.pipeline.kernel import (
    BuildRequest,
    ExportRequest,
    KernelTreeRequest,
    SeriesCheckRequest,
    build,
    export_patches,
    kernel_tree,
    series_check,
)


def cmd_build(args: argparse.Namespace) -> int:
    built = build(BuildRequest(common.kernel_choice(args)))
    print(f"kernel: {built.kernel}")
    print(f"initramfs: {built.initrd}")
    print(f"source: {built.description}")
    return 0


def cmd_kernel_tree(args: argparse.Namespace) -> int:
    tree = kernel_tree(KernelTreeRequest(args.dir, with_series=not args.no_series))
    print(tree)
    note(
        f"edit the series as commits on branch 'series' in {tree}; build it with "
        f"'mkh build --kernel-tree {tree}'; write it back with 'mkh export-patches {tree}'"
    )
    return 0


def cmd_series_check(args: argparse.Namespace) -> int:
    problems = series_check(SeriesCheckRequest(args.dir, args.base, build=not args.no_build))
    if not problems:
        note("every patch is checkpatch --strict clean" + ("" if args.no_build else " and builds"))
    return common.report(problems)


def cmd_export_patches(args: argparse.Namespace) -> int:
    written = export_patches(ExportRequest(args.dir, args.base))
    for patch in written:
        print(patch)
    note(f"wrote {len(written)} patches and the series file")
    return 0


def _add_tree(parser: argparse.ArgumentParser, base_help: str) -> None:
    parser.add_argument("dir", type=Path, help="the kernel tree (from mkh kernel-tree)")
    parser.add_argument(
        "--base",
        default=source.BASE_TAG,
        help=f"{base_help} after this revision (default {source.BASE_TAG})",
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    build = sub.add_parser("build", help="build (or reuse) the kernel and initramfs")
    common.add_kernel_choice(build)
    build.set_defaults(func=cmd_build)

    tree = sub.add_parser("kernel-tree", help="clone the kernel with the series as git commits")
    tree.add_argument("dir", type=Path, help="where to create the tree")
    tree.add_argument(
        "--no-series", action="store_true", help="leave the series out: the stock Debian source"
    )
    tree.set_defaults(func=cmd_kernel_tree)

    check = sub.add_parser(
        "series-check", help="checkpatch --strict and build every commit of a kernel tree"
    )
    _add_tree(check, "check commits")
    check.add_argument("--no-build", action="store_true", help="only run checkpatch")
    check.set_defaults(func=cmd_series_check)

    export = sub.add_parser("export-patches", help="write a tree's commits back as the series")
    _add_tree(export, "export commits")
    export.set_defaults(func=cmd_export_patches)
