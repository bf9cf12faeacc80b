"""The kernel build's progress figure: objects done of those the last build made."""

from __future__ import annotations

import io

from harness.core.progress import Counted, Step


def test_objects_are_counted_towards_the_last_build() -> None:
    step = Step("Building", io.StringIO())
    counted = Counted(step, expected=4)
    for line in ["  CC      kernel/fork.o", "make[2]: Entering directory", "  LD      vmlinux"]:
        counted.update(line)
    assert counted.done == 2
    assert counted.figure().startswith("2/4 objects (50%), about ")
    assert step.status == counted.figure()


def test_without_an_earlier_build_the_count_alone_is_shown() -> None:
    counted = Counted(Step("Building", io.StringIO()), expected=None)
    counted.update("  CC      init/main.o")
    assert counted.figure() == "1 objects"
