"""Resolve the images a guest boots: the default build, a user's tree, or a prebuilt bzImage."""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

from harness.build import bzimage, initramfs, kernel, source
from harness.core.errors import InfraError


@dataclass(frozen=True)
class Images:
    """What a guest boots: a kernel, an initramfs and (when known) the kernel config."""

    kernel: Path
    initrd: Path
    config: Path | None = None
    description: str = ""


@dataclass(frozen=True)
class KernelChoice:
    """Where the kernel comes from (at most one of the two paths is set)."""

    prebuilt: Path | None = None  # --kernel: a bzImage to boot as is
    tree: Path | None = None  # --kernel-tree: a kernel source tree to build
    in_tree: bool = False
    build_dir: Path | None = None
    variants: tuple[str, ...] = ()  # "debug", "coverage": images/linux/<variant>/*.config

    @property
    def default(self) -> bool:
        """Whether this is the default build (Debian's source + the series)."""
        return self.prebuilt is None and self.tree is None


def kernel_choice(
    prebuilt: Path | None = None,
    tree: Path | None = None,
    in_tree: bool = False,
    build_dir: Path | None = None,
    debug: bool = False,
    env: Mapping[str, str] = os.environ,
    coverage: bool = False,
) -> KernelChoice:
    """The kernel under test, checked before anything is built.

    Explicit paths (--kernel, --kernel-tree) win; else $MKH_KERNEL (a bzImage)
    or $MKH_KERNEL_TREE (a tree); else the default build.  Setting both
    variables is an error, whatever the flags say.  The debug build is asked
    for with `debug` (--debug-kernel) or MKH_DEBUG_KERNEL=1, the coverage
    build with `coverage` (mkh coverage) or MKH_COVERAGE_KERNEL=1.
    """
    env_kernel = env.get("MKH_KERNEL")
    env_tree = env.get("MKH_KERNEL_TREE")
    if env_kernel and env_tree:
        raise InfraError("MKH_KERNEL and MKH_KERNEL_TREE are both set; unset one")
    if prebuilt is not None and tree is not None:
        raise InfraError("--kernel and --kernel-tree exclude each other")
    kernel_flag, tree_flag = "--kernel", "--kernel-tree"
    if prebuilt is None and tree is None:
        prebuilt = Path(env_kernel) if env_kernel else None
        tree = Path(env_tree) if env_tree else None
        kernel_flag, tree_flag = "MKH_KERNEL", "MKH_KERNEL_TREE"
    try:
        if prebuilt is not None:
            bzimage.check(prebuilt)
        if tree is not None:
            source.makefile_version(tree)
    except InfraError as exc:
        raise InfraError(f"{kernel_flag if prebuilt else tree_flag}: {exc}") from None
    if tree is None and (in_tree or build_dir is not None):
        raise InfraError("--in-tree and --build-dir need a kernel tree (--kernel-tree)")
    asked = {"debug": (debug, "--debug-kernel"), "coverage": (coverage, "mkh coverage")}
    variants = []
    for variant, (flag, name) in asked.items():
        if flag and prebuilt is not None:
            raise InfraError(f"{name} cannot apply to a prebuilt kernel ({kernel_flag})")
        # The environment picks the variant of what is built; a prebuilt kernel is what it is.
        from_env = env.get(f"MKH_{variant.upper()}_KERNEL", "") not in ("", "0")
        if flag or (prebuilt is None and from_env):
            variants.append(variant)
    return KernelChoice(prebuilt, tree, in_tree, build_dir, tuple(variants))


def resolve(choice: KernelChoice) -> Images:
    """Build or reuse the images for a choice from kernel_choice()."""
    base = initramfs.build()
    if choice.prebuilt is not None:
        image = choice.prebuilt.resolve()
        config = choice.prebuilt.parent / ".config"
        return Images(
            image,
            initramfs.with_boot_files(base, image),
            config if config.is_file() else None,
            f"prebuilt {choice.prebuilt}",
        )
    # The default source holds the shared tree while the build uses it.
    chosen: AbstractContextManager[source.KernelSource] = (
        nullcontext(source.user_source(choice.tree)) if choice.tree else source.default_source()
    )
    with chosen as src:
        wanted = replace(src, variants=choice.variants)
        built = kernel.build(wanted, choice.build_dir, choice.in_tree)
    variants = "".join(f"{v} build, " for v in choice.variants)
    state = variants + ("reused" if built.reused else "built")
    initrd = initramfs.with_boot_files(base, built.bzimage)
    return Images(built.bzimage, initrd, built.config, f"{built.origin} ({state})")
