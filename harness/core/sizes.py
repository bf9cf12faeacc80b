"""Memory sizes as QEMU's `-m` and the kernel's memparse() (mkkernel_pool=) read them."""

from __future__ import annotations

import re

_SCALE = {unit: 1 << (10 * power) for power, unit in enumerate("BKMGTPE")}
_QEMU = re.compile(r"(\d+(?:\.\d+)?)([BKMGTPE]?)", re.IGNORECASE)
_KERNEL = re.compile(r"(0x[0-9a-f]+|\d+)([KMGTPE]?)", re.IGNORECASE)


def qemu(text: str) -> int:
    """Bytes in a QEMU `-m` size: a number, MiB unless a B/K/M/G/T/P/E suffix says otherwise."""
    match = _QEMU.fullmatch(text.strip())
    if not match:
        raise ValueError(f"not a size: {text!r} (e.g. 512M, 2G)")
    number, unit = match.groups()
    size = int(float(number) * _SCALE[unit.upper() or "M"])
    if size <= 0:
        raise ValueError(f"size must be more than 0: {text!r}")
    return size


def kernel(text: str) -> int:
    """Bytes in a kernel memparse() size: bytes unless a K/M/G/T/P/E suffix says otherwise."""
    match = _KERNEL.fullmatch(text.strip())
    if not match:
        raise ValueError(f"not a size: {text!r} (e.g. 512M, 2G)")
    number, unit = match.groups()
    value = int(number, 16) if number[:2].lower() == "0x" else int(number)
    return value * _SCALE[unit.upper() or "B"]
