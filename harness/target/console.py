"""Console streams: each serial port (and the kernel log port) of a guest.

Every byte read from a console goes to its log file and through a crash
detector.  Between operations a background thread drains each console so
its log and crash checks stay current; an operation that talks to a shell
holds `driven()` so that pexpect alone reads what the shell answers.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol, TextIO

import pexpect
from pexpect import fdpexpect

from harness.core.errors import QEMU_EXITED, GuestExited, GuestTimeout, KernelCrash
from harness.core.rundir import RunDir
from harness.target import uarts
from harness.target.crash import Crash, Detector

SLICE = 0.2  # seconds between health checks while waiting
CRASH_GRACE = 2.0  # seconds to keep reading after a crash line, for the backtrace
TAIL_CHARS = 2000


class Tap:
    """pexpect's logfile_read: appends to the log and feeds the crash detector.

    It also signals texts somebody waits for (`expect_text`), whoever reads
    the stream at the time: the background drain or a driving operation.
    """

    def __init__(self, log: TextIO, detector: Detector) -> None:
        self._log = log
        self.detector = detector
        self._tail = ""
        self._waits: dict[str, threading.Event] = {}
        self._carry = ""
        self._lock = threading.Lock()

    def write(self, data: str) -> None:
        self._log.write(data)
        self._log.flush()
        self._tail = (self._tail + data)[-TAIL_CHARS:]
        with self._lock:
            self.detector.feed(data)
            if not self._waits:
                return
            window = self._carry + data
            for text in [t for t in self._waits if t in window]:
                self._waits.pop(text).set()
            longest = max((len(t) for t in self._waits), default=1)
            self._carry = window[-(longest - 1) :] if longest > 1 else ""

    def expect_text(self, text: str) -> threading.Event:
        """An event set once `text` passes through (register before it can arrive)."""
        event = threading.Event()
        with self._lock:
            self._waits[text] = event
        return event

    def forget_text(self, text: str) -> None:
        with self._lock:
            self._waits.pop(text, None)

    def take_crash(self, watch: bool) -> Crash | None:
        """The crash seen so far; a fresh detector (or none) carries on mid-line."""
        with self._lock:
            crash = self.detector.crash
            self.detector = self.detector.successor(enabled=watch)
        return crash

    def flush(self) -> None:
        self._log.flush()

    def tail(self) -> str:
        return self._tail

    def forget_tail(self) -> None:
        """What passed so far is no longer looked at (a new kernel takes the stream over)."""
        self._tail = ""


class Stream(Protocol):
    """What a console reads and writes: a socket to QEMU, or a pty master in tests."""

    def fileno(self) -> int: ...

    def close(self) -> None: ...


class Console:
    """One console stream of a running guest."""

    def __init__(
        self,
        name: str,
        sock: Stream,
        log_path: Path,
        crash_checked: bool = True,
        ended: str = QEMU_EXITED,
    ) -> None:
        self.name = name
        self.ended = ended  # what the end of the stream means, for GuestExited
        self.log_path = log_path
        self._sock = sock
        self._log = log_path.open("a", encoding="utf-8", errors="replace")
        self.tap = Tap(self._log, Detector(name, enabled=crash_checked))
        self.child = fdpexpect.fdspawn(
            sock.fileno(),
            encoding="utf-8",
            codec_errors="replace",
            timeout=SLICE,
        )
        self.child.logfile_read = self.tap
        self.closed = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pump: threading.Thread | None = None
        self._driven = 0

    @property
    def detector(self) -> Detector:
        return self.tap.detector

    @property
    def crash(self) -> Crash | None:
        return self.detector.crash

    def tail(self) -> str:
        return self.tap.tail()

    def forget_tail(self) -> None:
        self.tap.forget_tail()

    def expect_text(self, text: str) -> threading.Event:
        return self.tap.expect_text(text)

    def forget_text(self, text: str) -> None:
        self.tap.forget_text(text)

    def wait_event(
        self, event: threading.Event, timeout: float, what: str, health: Callable[[], None]
    ) -> None:
        """Wait for `event` (from expect_text) with `health()` between slices."""
        deadline = time.monotonic() + timeout
        while not event.wait(SLICE):
            health()
            if self.closed:
                raise GuestExited(self.name, self.tail(), ended=self.ended)
            if time.monotonic() > deadline:
                raise GuestTimeout(self.name, what, timeout, self.tail())
        health()

    def take_crash(self, watch: bool = True) -> Crash | None:
        """Hand over the crash seen here (an expected one) and watch for the next.

        With `watch=False` this stream is no longer crash-checked (a kernel a
        test locked up on purpose keeps reporting the same lockup).
        """
        return self.tap.take_crash(watch)

    # -- background draining ----------------------------------------------

    def watch(self) -> None:
        """Drain this console in the background (the state between operations)."""
        if self._pump is None and not self.closed:
            self._stop.clear()
            self._pump = threading.Thread(
                target=self._drain, name=f"console-{self.name}", daemon=True
            )
            self._pump.start()

    def _drain(self) -> None:
        while not self._stop.is_set() and not self.closed:
            self.read_some(SLICE)

    def drive(self) -> None:
        """Stop background draining: the caller reads the console from now on."""
        if self._pump is not None:
            self._stop.set()
            self._pump.join()
            self._pump = None

    @contextmanager
    def driven(self) -> Iterator[Console]:
        """Read this console only through the caller for the duration (re-entrant)."""
        self._driven += 1
        self.drive()
        try:
            yield self
        finally:
            self._driven -= 1
            if not self._driven:
                self.watch()

    def read_some(self, timeout: float) -> None:
        """Read whatever arrives within `timeout` (into the log and detector only)."""
        with self._lock:
            if self.closed:
                return
            try:
                self.child.read_nonblocking(65536, timeout=timeout)
            except pexpect.TIMEOUT:
                pass
            except (pexpect.EOF, OSError):
                self._mark_closed()

    def drain(self, seconds: float) -> None:
        """Read until the stream ends or `seconds` pass (to complete a crash excerpt)."""
        deadline = time.monotonic() + seconds
        while not self.closed and time.monotonic() < deadline:
            self.read_some(min(SLICE, max(0.0, deadline - time.monotonic())))

    def _mark_closed(self) -> None:
        if not self.closed:
            self.closed = True
            self.detector.flush()

    # -- driving ----------------------------------------------------------

    def send(self, text: str) -> None:
        try:
            self.child.send(text)
        except OSError:
            self._mark_closed()
            raise GuestExited(self.name, self.tail(), ended=self.ended) from None

    def expect(
        self,
        patterns: Sequence[str | re.Pattern[str]],
        timeout: float,
        what: str,
        health: Callable[[], None],
    ) -> int:
        """Wait for one of `patterns`; `health()` runs between slices and may raise.

        Returns the index of the pattern that matched; `self.child.match` and
        `self.child.before` describe the match.  Raises GuestTimeout (quoting
        the console tail) or GuestExited when the stream ends.
        """
        deadline = time.monotonic() + timeout
        compiled = [re.compile(p) if isinstance(p, str) else p for p in patterns]
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                health()
                raise GuestTimeout(self.name, what, timeout, self.tail())
            try:
                index = self.child.expect_list(compiled, timeout=min(SLICE, remaining))
            except pexpect.TIMEOUT:
                health()
                continue
            except (pexpect.EOF, OSError):
                self._mark_closed()
                health()
                raise GuestExited(self.name, self.tail(), ended=self.ended) from None
            health()
            return int(index)

    def close(self) -> None:
        self.drive()
        self._mark_closed()
        try:
            self._sock.close()
        finally:
            self._log.close()


def report_crash(console: Console, saved: Path, where: str) -> None:
    """KernelCrash for the crash `console` showed, if any, its excerpt kept in `saved`.

    The console is read a little longer first, for the rest of the backtrace.
    """
    if console.crash is None:
        return
    console.drain(CRASH_GRACE)
    crash = console.crash
    assert crash is not None
    saved.write_text(crash.text() + "\n")
    raise KernelCrash(
        crash.console, crash.kind, crash.line, crash.text(), f"{where}, saved in {saved}"
    )


def check_crashes(consoles: Iterable[Console], run: RunDir) -> None:
    """KernelCrash for the first of `consoles` that showed a crash, its excerpt in the run."""
    for console in consoles:
        saved = run.file(f"crash-{console.name}.txt")
        report_crash(console, saved, uarts.describe(console.name))
