"""Sizing the multikernel pool (`mkkernel_pool=`) and the guest memory around it."""

from __future__ import annotations

import re

from harness.core import sizes
from harness.core.errors import InfraError

MIB = 1 << 20
# The pool is reserved in steps of this many bytes.
STEP = 256 * MIB
# What the host kernel keeps for itself beside the pool, by default.
HOST_MEMORY = 1024 * MIB
PARAM = re.compile(r"(?:^|\s)mkkernel_pool=(\S*)")


def size(instance_bytes: int, headroom: int = 0) -> int:
    """A pool that holds `instance_bytes` of instances and `headroom` more, in whole steps."""
    return -(-(instance_bytes + headroom) // STEP) * STEP


def append(pool: int) -> str:
    """The kernel parameter that reserves `pool` bytes."""
    return f"mkkernel_pool={pool // MIB}M"


def guest_memory(pool: int, host: int = HOST_MEMORY) -> str:
    """QEMU's memory for a guest with `pool` reserved and `host` bytes for the host kernel."""
    return f"{(pool + host) // MIB}M"


def check_fits(cmdline: str, memory: str) -> None:
    """A pool on `cmdline` must leave the guest kernel some of its memory (QEMU's `memory`)."""
    total = sizes.qemu(memory)
    for value in PARAM.findall(cmdline):
        try:
            pool = sizes.kernel(value.partition("@")[0])
        except ValueError as exc:
            raise InfraError(f"mkkernel_pool={value}: {exc}") from None
        if pool >= total:
            raise InfraError(
                f"mkkernel_pool={value} does not fit in --memory {memory}: "
                "give the guest more memory or a smaller pool"
            )
