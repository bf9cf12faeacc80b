"""Progress reporting for long steps.

On a terminal a step is one line that keeps its elapsed time and latest status
up to date; elsewhere (CI logs, pipes) a step prints a start line, its status
at most once a minute, and an end line with the time it took.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol, TextIO

# Off a terminal, a step's status goes out as a line of its own at most this often.
LOG_EVERY = 60.0


class Step:
    """A running step; `update()` sets the status shown after its title."""

    def __init__(self, title: str, stream: TextIO) -> None:
        self.title = title
        self.status = ""
        self.started = time.monotonic()
        self._logged = self.started
        self._stream = stream
        self._live = stream.isatty()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def update(self, status: str) -> None:
        self.status = status.strip()
        if self._live:
            self._draw()
        elif time.monotonic() - self._logged >= LOG_EVERY:
            self._logged = time.monotonic()
            self._stream.write(self._line() + "\n")
            self._stream.flush()

    def _line(self) -> str:
        secs = int(self.elapsed())
        return f"  {self.title} [{secs // 60:02d}:{secs % 60:02d}] {self.status}"

    def _draw(self) -> None:
        with self._lock:
            self._stream.write("\r\033[K" + self._line()[:160])
            self._stream.flush()

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            self._draw()

    def start(self) -> None:
        if self._live:
            self._thread = threading.Thread(target=self._tick, daemon=True)
            self._thread.start()
            self._draw()
        else:
            self._stream.write(f"  {self.title} ...\n")
            self._stream.flush()

    def finish(self, outcome: str) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        with self._lock:
            prefix = "\r\033[K" if self._live else ""
            self._stream.write(f"{prefix}  {self.title}: {outcome} ({self.elapsed():.1f}s)\n")
            self._stream.flush()


class Status(Protocol):
    """What takes a long command's output lines, one at a time."""

    def update(self, status: str) -> None: ...


# The lines of kbuild's output that stand for one object built.
_OBJECT = re.compile(r"^\s+(CC|AS|AR|LD|HOSTCC|OBJCOPY)\s")


class Counted:
    """A build step's status as objects done of those expected, with the time left.

    `expected` is how many the last build of the same tree made (None the
    first time: the count alone is shown).
    """

    def __init__(self, step: Step, expected: int | None) -> None:
        self.step = step
        self.expected = expected
        self.done = 0

    def update(self, line: str) -> None:
        if not _OBJECT.match(line):
            return
        self.done += 1
        self.step.update(self.figure())

    def figure(self) -> str:
        if not self.expected:
            return f"{self.done} objects"
        share = min(self.done / self.expected, 0.99)
        left = self.step.elapsed() * (1 - share) / share
        return (
            f"{self.done}/{self.expected} objects ({share:.0%}), "
            f"about {int(left) // 60}:{int(left) % 60:02d} left"
        )


@contextmanager
def step(title: str, stream: TextIO | None = None) -> Iterator[Step]:
    """Report a long piece of work; marks it failed if the body raises."""
    current = Step(title, stream or sys.stderr)
    current.start()
    try:
        yield current
    except BaseException:
        current.finish("failed")
        raise
    current.finish("done")


def note(message: str, stream: TextIO | None = None) -> None:
    """A one-line message for the user, on stderr."""
    out = stream or sys.stderr
    out.write(f"mkh: {message}\n")
    out.flush()
