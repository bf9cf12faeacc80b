"""The first stage of every run: options that fit, then the kernel and images resolved or built."""

from __future__ import annotations

from harness.build import images
from harness.build.images import Images, KernelChoice
from harness.multikernel import pool
from harness.target.options import TargetOptions


def check_pool(options: TargetOptions) -> None:
    """A multikernel pool must leave the guest kernel some of its memory (QEMU's memory)."""
    if options.lab_env is not None:
        return  # a lab machine has the memory it has
    pool.check_fits(options.append, options.memory)


def images_for(kernel: KernelChoice, options: TargetOptions) -> Images:
    """The images a target booted with `options` runs, once the options are known to fit."""
    check_pool(options)
    return images.resolve(kernel)
