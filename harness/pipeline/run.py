"""`mkh run` from its request: images, boot the target, run one command, finish, report."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.build.images import KernelChoice
from harness.core.errors import HarnessError
from harness.core.rundir import RunDir
from harness.pipeline.boot import Boots
from harness.pipeline.prepare import images_for
from harness.target.options import TargetOptions
from harness.target.protocol import Completed


@dataclass(frozen=True)
class RunRequest:
    """One command on a freshly booted target, torn down after it."""

    kernel: KernelChoice
    options: TargetOptions
    command: str  # a shell command line
    timeout: float
    artifacts: Path | None = None  # the run directory; None: a new one in the cache


def run(request: RunRequest, show: Callable[[Completed], None] | None = None) -> Completed:
    """Boot, run the command, take a last look at every log; result.json says how it went.

    `show` gets what the command printed before that last look, which may
    still fail the run: the output is not lost.
    """
    built = images_for(request.kernel, request.options)
    boots = Boots(built, request.kernel, f"mkh run: {request.command}")
    with RunDir(request.artifacts) as run_dir:
        try:
            with boots.ended() as status:
                target = boots.boot(request.options, run_dir)
                ran = target.run(request.command, timeout=request.timeout)
                if show is not None:
                    show(ran)
                status.value = ran.status
        except (HarnessError, KeyboardInterrupt) as exc:
            if boots.targets:  # not before there is a target: its run directory has its logs
                exc.add_note(f"artifacts: {run_dir.path}")
            raise
    return ran
