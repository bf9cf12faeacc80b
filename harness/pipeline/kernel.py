"""`mkh build`, `mkh kernel-tree`, `mkh series-check`, `mkh export-patches` from their requests.

Each returns what it made or found: the images, the new tree, the series'
problems, the patches written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.build import images, series, source
from harness.build.images import Images, KernelChoice


@dataclass(frozen=True)
class BuildRequest:
    kernel: KernelChoice


def build(request: BuildRequest) -> Images:
    """The images of the kernel asked for, built or reused."""
    return images.resolve(request.kernel)


@dataclass(frozen=True)
class KernelTreeRequest:
    dest: Path  # where the tree goes: a new or an empty directory
    with_series: bool = True  # False: the stock Debian source


def kernel_tree(request: KernelTreeRequest) -> Path:
    """A clone of the kernel with the series as commits on branch 'series'; its path."""
    return source.make_kernel_tree(request.dest, with_series=request.with_series)


@dataclass(frozen=True)
class SeriesCheckRequest:
    tree: Path  # a kernel tree (from mkh kernel-tree)
    base: str = source.BASE_TAG  # the commits after this revision are checked
    build: bool = True  # False: checkpatch only


def series_check(request: SeriesCheckRequest) -> list[str]:
    """What checkpatch --strict (and building each commit) found; empty: nothing."""
    return series.check(request.tree, request.base, build=request.build)


@dataclass(frozen=True)
class ExportRequest:
    tree: Path  # a kernel tree (from mkh kernel-tree)
    base: str = source.BASE_TAG  # the commits after this revision are the series


def export_patches(request: ExportRequest) -> list[Path]:
    """The tree's commits written back as the series; the patch files."""
    return source.export_patches(request.tree, request.base)
