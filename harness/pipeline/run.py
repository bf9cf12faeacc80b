"""`mkh run` from its request: images, boot the target, run one command, finish, report."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.build.images import KernelChoice
from harness.core.errors import HarnessError
from harness.core.rundir import RunDir
from harness.pipeline.prepare import images_for
from harness.report import result_json
from harness.target.factory import make_target
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
    what = f"mkh run: {request.command}"
    with RunDir(request.artifacts) as run_dir:
        target = make_target(built, request.options, run_dir)
        with result_json.recorded(run_dir, built, request.kernel, what) as status:
            try:
                target.boot()
                ran = target.run(request.command, timeout=request.timeout)
                if show is not None:
                    show(ran)
                target.finish()
            except (HarnessError, KeyboardInterrupt) as exc:
                exc.add_note(f"artifacts: {run_dir.path}")
                raise
            finally:
                target.close()
            status.value = ran.status
    return ran
