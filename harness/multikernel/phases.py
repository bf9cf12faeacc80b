"""Where the time of a boot and of a spawn goes, from the kernels' TSC stamps.

Every kernel of the series lists the steps of its own start in debugfs
multikernel/boot_tsc (the purgatory's entry and its jump to the image in a
spawned kernel, the kernel's entry, and the steps the mkh init marks:
`init` when it starts, `shell` just before it runs the shell); the host lists
the steps of the last instance start in multikernel/start_tsc (the exec
call, the wakeup of the CPU begun, the CPU in the trampoline).  All are
read on the TSC every CPU shares, so differences between kernels are
meaningful.

A phase runs from one stamp to the next; `rest` is what the harness's wall
clock saw beyond the stamps (QEMU's own start, the console, the shell's
first answer), so the phases of a run add up to its total.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.core.errors import InfraError

# QEMU resets the TSC to 0 with the machine, so the host kernel's first
# stamp counts the firmware and the decompressor from there.
RESET = "reset"

# (phase name, first stamp, last stamp); the first phase's first stamp of a
# spawn is the host's exec call, of a boot the machine's reset.
BOOT_PHASES = (
    ("firmware and decompressor", RESET, "kernel"),
    ("kernel entry to /init", "kernel", "init"),
    ("/init to its shell", "init", "shell"),
)
SPAWN_PHASES = (
    ("exec call to wakeup (segment check)", "exec", "wakeup"),
    ("wakeup (INIT, SIPI) to trampoline", "wakeup", "trampoline"),
    ("trampoline to purgatory", "trampoline", "purgatory"),
    ("purgatory", "purgatory", "purgatory-done"),
    ("decompressor", "purgatory-done", "kernel"),
    ("kernel entry to /init", "kernel", "init"),
    ("/init to its shell", "init", "shell"),
)
REST = "rest (not stamped)"
_LINE = re.compile(r"^([a-z0-9_-]+) (\S+)$")


@dataclass(frozen=True)
class Stamps:
    khz: int  # TSC cycles per millisecond
    tsc: dict[str, int]


def parse(text: str) -> Stamps:
    """The stamps of a boot_tsc or start_tsc file (its `tsc_khz` line is the rate)."""
    tsc: dict[str, int] = {}
    for line in text.splitlines():
        match = _LINE.match(line.strip())
        if match and match.group(1) != "instance":
            tsc[match.group(1)] = int(match.group(2))
    khz = tsc.pop("tsc_khz", 0)
    if khz <= 0:
        raise InfraError(f"no tsc_khz among the kernel's stamps: {text.strip()!r}")
    return Stamps(khz, tsc)


# Kernels measure the one TSC's rate each (an instance gets the host's at
# load, maybe before the host refined it): they agree to within this.
RATE_TOLERANCE = 0.001


def merge(*stamps: Stamps) -> Stamps:
    """Stamps of several kernels on one machine (one TSC), at the first kernel's rate."""
    rates = sorted(s.khz for s in stamps)
    if rates[-1] - rates[0] > rates[0] * RATE_TOLERANCE:
        raise InfraError(f"kernels report different TSC rates: {rates} kHz")
    merged: dict[str, int] = {RESET: 0}
    for s in stamps:
        merged.update(s.tsc)
    return Stamps(stamps[0].khz, merged)


@dataclass(frozen=True)
class Breakdown:
    phases: dict[str, float]  # seconds, in order, ending with REST
    total: float  # seconds, by the harness's wall clock

    @property
    def stamped(self) -> float:
        """Seconds between the first and the last stamp: the kernels' own view."""
        return self.total - self.phases[REST]


def breakdown(stamps: Stamps, steps: tuple[tuple[str, str, str], ...], total: float) -> Breakdown:
    """Phases in seconds between consecutive stamps; refuses missing or unordered ones."""
    phases: dict[str, float] = {}
    for name, first, last in steps:
        missing = [s for s in (first, last) if s not in stamps.tsc]
        if missing:
            raise InfraError(
                f"no {', '.join(missing)} stamp for phase {name!r}: "
                "does the kernel have CONFIG_MULTIKERNEL_DEBUG and the mkh init?"
            )
        cycles = stamps.tsc[last] - stamps.tsc[first]
        if cycles < 0:
            raise InfraError(f"phase {name!r} ends before it starts ({last} < {first})")
        phases[name] = cycles / (stamps.khz * 1000)
    phases[REST] = total - sum(phases.values())
    return Breakdown(phases, total)
