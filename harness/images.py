"""Resolve the images a guest boots: the default build, a user's tree, or a prebuilt bzImage."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from . import initramfs, kernel, source
from .errors import InfraError
from .guest import Images


@dataclass(frozen=True)
class KernelChoice:
    """Where the kernel comes from (at most one of the two paths is set)."""

    prebuilt: Path | None = None  # --kernel: a bzImage to boot as is
    tree: Path | None = None  # --kernel-tree: a kernel source tree to build
    in_tree: bool = False
    build_dir: Path | None = None


def resolve(choice: KernelChoice) -> Images:
    if choice.prebuilt is not None and choice.tree is not None:
        raise InfraError("--kernel and --kernel-tree exclude each other")
    base = initramfs.build()
    if choice.prebuilt is not None:
        if not choice.prebuilt.is_file():
            raise InfraError(f"--kernel {choice.prebuilt}: no such file")
        bzimage = choice.prebuilt.resolve()
        config = choice.prebuilt.parent / ".config"
        return Images(
            bzimage,
            initramfs.with_boot_files(base, bzimage),
            config if config.is_file() else None,
            f"prebuilt {choice.prebuilt}",
        )
    # The default source holds the shared tree while the build uses it.
    chosen: AbstractContextManager[source.KernelSource] = (
        nullcontext(source.user_source(choice.tree)) if choice.tree else source.default_source()
    )
    with chosen as src:
        built = kernel.build(src, choice.build_dir, choice.in_tree)
    state = "reused" if built.reused else "built"
    initrd = initramfs.with_boot_files(base, built.bzimage)
    return Images(built.bzimage, initrd, built.config, f"{built.origin} ({state})")
