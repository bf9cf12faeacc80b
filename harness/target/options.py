"""What a target is booted with, QEMU's or a lab machine's."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# How the harness runs the host's commands: its shell on ttyS0, or SSH.
TRANSPORTS = ("console", "ssh")
# CONFIG_NR_CPUS of images/linux/base.config: the guest kernel uses no more CPUs.
MAX_SMP = 16


@dataclass
class TargetOptions:
    smp: int = 4
    # SMT threads per core, as QEMU's -smp N,threads=T (N a multiple of T).
    threads: int = 1
    memory: str = "2G"
    append: str = ""
    accel: str = "auto"
    boot_timeout: float = 120.0
    put: list[tuple[Path, str]] = field(default_factory=list)
    gdb_port: int | None = None
    transport: str = "console"
    # A labgrid environment: boot on that lab machine instead of QEMU (harness/target/lab.py).
    lab_env: Path | None = None
