"""The kernel build's progress figure: objects done of those the last build made."""

from __future__ import annotations

import io
import time

import pytest

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


def test_off_a_terminal_the_status_is_a_line_a_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    out = io.StringIO()
    step = Step("Building", out)
    step.start()
    for second in range(0, 150, 10):
        now[0] = 1000.0 + second
        step.update(f"{second} objects")
    lines = out.getvalue().splitlines()
    assert lines == [
        "  Building ...",
        "  Building [01:00] 60 objects",
        "  Building [02:00] 120 objects",
    ]
