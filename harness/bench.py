"""Benchmarks: figures measured in one run and reported as ratios."""

from __future__ import annotations

import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .artifacts import RunDir
from .dtb import Instance
from .guest import Guest, GuestOptions, Images
from .mk import Multikernel

# The web-server instance of the usage.rst example.
SPAWN_INSTANCE = Instance("web-server", 1, (1,), 0x20000000)


@dataclass(frozen=True)
class SpawnSample:
    host_boot: float  # QEMU start to the host's shell prompt
    spawn: float  # exec call to the instance's shell prompt


def spawn_once(images: Images, accel: str, workdir: Path) -> SpawnSample:
    options = GuestOptions(smp=4, memory="2G", append="mkkernel_pool=1G", accel=accel)
    with RunDir(workdir) as run, Guest(images, options, run) as guest:
        host_boot = run.timing("shell-ready") - run.timing("qemu-started")
        mk = Multikernel(guest)
        mk.spawn(SPAWN_INSTANCE)
        return SpawnSample(host_boot, mk.spawn_seconds[SPAWN_INSTANCE.name])


def spawn(images: Images, runs: int, accel: str = "auto") -> list[SpawnSample]:
    samples = []
    with tempfile.TemporaryDirectory(prefix="mkh-bench-") as tmp:
        for n in range(runs):
            samples.append(spawn_once(images, accel, Path(tmp) / f"run{n}"))
    return samples


def report(samples: list[SpawnSample]) -> str:
    lines = [f"{'run':>4} {'host boot (s)':>14} {'spawn (s)':>10} {'ratio':>7}"]
    for n, s in enumerate(samples, start=1):
        lines.append(f"{n:>4} {s.host_boot:>14.2f} {s.spawn:>10.2f} {s.spawn / s.host_boot:>7.2f}")
    boot = statistics.median(s.host_boot for s in samples)
    spawn_median = statistics.median(s.spawn for s in samples)
    lines.append(
        f"median host boot {boot:.2f}s, median spawn {spawn_median:.2f}s, "
        f"spawn/boot ratio {spawn_median / boot:.2f}"
    )
    return "\n".join(lines)
