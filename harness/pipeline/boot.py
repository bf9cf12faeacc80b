"""The boot stage of a run: its targets made and booted, then ended together with its verdict.

Ended: unless the run failed, every target's logs get a last look (a crash
printed late still fails the run); every target is closed; each one's run
directory gets result.json with the run's verdict.  `mkh run` (run.py)
ends its target when its block ends; the test suite's boot fixture ends
what a test booted with the test's outcome, which it learns after the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from harness.build.images import Images, KernelChoice
from harness.core.rundir import RunDir
from harness.report import result_json
from harness.report.result_json import Status
from harness.target.base import Target
from harness.target.factory import make_target
from harness.target.options import TargetOptions

if TYPE_CHECKING:
    from harness.target.labgrid import Lab


class Boots:
    """The targets one run boots, each when asked for, all ended together.

    `choice` and `what` are what result.json says the run ran; a `lab`
    given is the caller's to close.
    """

    def __init__(
        self, images: Images, choice: KernelChoice, what: str, lab: Lab | None = None
    ) -> None:
        self.images = images
        self.choice = choice
        self.what = what
        self.lab = lab
        self.targets: list[Target] = []

    def boot(self, options: TargetOptions, run: RunDir) -> Target:
        """The target `options` ask for (the lab's machine if there is a lab), booted.

        Its logs go to `run`; it is ended with the others, also when its boot fails.
        """
        target = make_target(self.images, options, run, self.lab)
        self.targets.append(target)
        target.boot()
        return target

    def end(self, failure: BaseException | None, status: int = 0, *, record: bool = True) -> None:
        """End the targets of a run that raised `failure`, else ended with `status`.

        What the last look finds is raised, and is the run's verdict.
        `record=False` (a skipped test) writes no result.json.
        """
        try:
            if failure is None:
                for target in self.targets:
                    target.finish()
        except BaseException as exc:
            failure = exc
            raise
        finally:
            for target in self.targets:
                target.close()
            if record:
                for target in self.targets:
                    result_json.record(
                        target.run_dir, failure, status, self.images, self.choice, self.what
                    )

    @contextmanager
    def ended(self) -> Iterator[Status]:
        """End the targets when the block ends: from its exception, else the status it set."""
        status = Status()
        try:
            yield status
        except BaseException as exc:
            self.end(exc)
            raise
        self.end(None, status.value)
