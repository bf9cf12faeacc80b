"""`mkh bench update`: a host live update with an instance running, next to a full host boot.

One run: the guest boots (the full boot the ratios compare with), an
instance starts with a counter that writes its uptime every 0.1 s, and the
host kexecs into the same kernel.  The host's downtime runs from its last
answer before the kexec to the first of the new host; the instance's
longest gap is the largest step in its counter's stream across the update.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from harness.bench.measure import accel_of, booted
from harness.build.images import Images
from harness.core import progress
from harness.multikernel.dtb import Instance
from harness.multikernel.mk import MKCON, Multikernel
from harness.target.options import TargetOptions

INSTANCE = Instance("web-server", 1, (1,), 256 << 20)
TICKS = "/tmp/ticks"
TICK = 0.1


@dataclass(frozen=True)
class UpdateRun:
    boot: float  # QEMU start to the host's shell prompt
    stage: float  # the next kernel and initramfs put in place, before the kexec
    downtime: float  # the old host's last answer to the new host's first
    gap: float  # the instance's longest step between ticks across the update
    ticks: int  # how many ticks that stream had
    accel: str


def longest_gap(ticks: list[float]) -> float:
    """The largest step between successive ticks."""
    return max((b - a for a, b in itertools.pairwise(ticks)), default=0.0)


def run(images: Images, accel: str = "auto") -> UpdateRun:
    options = TargetOptions(
        smp=2, memory="2G", append="mkkernel_pool=1G", accel=accel, transport="ssh"
    )
    with booted(images, options) as guest:
        timings = guest.run_dir
        boot = timings.timing("shell-ready") - timings.timing("qemu-started")
        mk = Multikernel(guest, guest.instances)
        # Its console over shared memory, which comes through the update (a UART does not).
        shell = mk.spawn(INSTANCE, console=MKCON)
        shell.check(f"(while :; do cut -d' ' -f1 /proc/uptime >> {TICKS}; sleep {TICK}; done) &")
        before = timings.mark("kexec-asked")
        with progress.step("host live update (kexec into the same kernel)"):
            guest.kexec()
        staged, answered = timings.timing("kexec-staged"), timings.timing("kexec")
        ticks = [float(t) for t in shell.check(f"cat {TICKS}").split()]
        return UpdateRun(
            boot=boot,
            stage=staged - before,
            downtime=answered - staged,
            gap=longest_gap(ticks),
            ticks=len(ticks),
            accel=accel_of(guest),
        )
