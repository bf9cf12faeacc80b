"""The kernel logs the host keeps of its instances, crash-checked at the end of a run.

The host shows each instance's log, every record at every level whatever
the instance's command line, in /sys/fs/multikernel/instances/<name>/log
(the newest 64 KiB of its current or last run).  An instance the harness
started logs to a console it reads and checks already; every other one
(started by hand from a shell or a script) is checked here, so that its
warnings do not go unseen.
"""

from __future__ import annotations

from collections.abc import Collection

from harness.core.errors import KernelCrash
from harness.core.rundir import RunDir
from harness.target.crash import Crash, Detector
from harness.target.protocol import CommandProtocol

INSTANCES = "/sys/fs/multikernel/instances"


def where(name: str) -> str:
    """How a crash in instance `name`'s log is named."""
    return f"instance {name}"


def find_crash(name: str, log: str) -> Crash | None:
    """The first crash in instance `name`'s log text, with its context."""
    detector = Detector(where(name))
    detector.feed(log)
    return detector.flush()


def check(commands: CommandProtocol, run_dir: RunDir, skip: Collection[str]) -> None:
    """KernelCrash for the first instance (not in `skip`) whose log shows one.

    Each log read is kept in the run as instance-<name>.log.  A kernel
    without the multikernel filesystem, or without instance logs, has
    nothing to check.
    """
    listed = commands.run(f"ls {INSTANCES} 2>/dev/null", timeout=30)
    if listed.status != 0:
        return
    for name in listed.output.split():
        if name in skip:
            continue
        shown = commands.run(f"cat {INSTANCES}/{name}/log 2>/dev/null", timeout=60)
        if shown.status != 0:
            continue
        saved = run_dir.file(f"instance-{name}.log")
        saved.write_text(shown.output)
        crash = find_crash(name, shown.output)
        if crash is not None:
            found = f"{where(name)}, log in {saved}"
            raise KernelCrash(crash.console, crash.kind, crash.line, crash.text(), found)
