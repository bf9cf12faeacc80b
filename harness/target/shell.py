"""The mkh init's shell on one UART: run commands, get their output and status, stay in step.

Every command runs in a child shell (`sh -c`), so `exit 3` or `set -e` ends
that child, never the session.  Its output is what the UART shows between a
begin and an end marker carrying a per-shell random nonce and a sequence
number; the markers are typed with quotes that the echo of the typed line
does not match, and the shell prompt is never looked for, so output that
contains the prompt, or an old marker, comes back whole.

When the kernel's log stream is known, the same line writes a marker to
/dev/kmsg after the command, and the command is complete only once that
marker has come through the log stream (harness/target/logsync.py).  After
a timeout the shell is interrupted (Ctrl-C) and brought back in step, or
refuses further use with a clear error.
"""

from __future__ import annotations

import base64
import itertools
import secrets
import shlex
import time
from collections.abc import Callable

from harness.core.errors import GuestExited, GuestTimeout, HarnessError
from harness.core.progress import note
from harness.target.console import Console
from harness.target.crash import Crash
from harness.target.logsync import KMSG, LOG_SYNC_TIMEOUT, LogSync
from harness.target.protocol import DEFAULT_TIMEOUT, CommandProtocol, Completed

READY = "mkh-guest: ready"
# busybox's line editor truncates long lines; longer commands go through a file.
MAX_LINE = 600
CHUNK = 300
RESYNC_TIMEOUT = 15.0


class ShellUnusable(HarnessError):
    """A shell that lost step (or whose kernel died) was asked to run a command."""

    def __init__(self, console: str, why: str) -> None:
        super().__init__(f"the shell on {console} cannot be used: {why}")


class Shell(CommandProtocol):
    """The busybox shell of the mkh init on one console of a running machine."""

    def __init__(
        self,
        console: Console,
        health: Callable[[], None],
        log: Console | None = None,
        on_timeout: Callable[[Shell], None] | None = None,
        kmsg: str = KMSG,
    ) -> None:
        self.console = console
        self.health = health
        self.log = log
        self.on_timeout = on_timeout
        self.kmsg = kmsg  # where the shell writes the markers its kernel logs
        self.unusable: str | None = None
        self.crash_acknowledged = False
        self._busy = False  # a command was sent and its end not seen
        self._nonce = secrets.token_hex(4)
        self._ids = itertools.count(1)

    @property
    def name(self) -> str:
        return self.console.name

    def _marker(self, kind: str, n: int) -> tuple[str, str]:
        """(what to type, what the shell prints) for marker `kind` number `n`."""
        return f"MKH''{self._nonce}{kind}{n}", f"MKH{self._nonce}{kind}{n}"

    def wait_ready(self, timeout: float) -> None:
        """Wait for the init's banner, then get in step with the shell."""
        with self.console.driven():
            # The banner may have been drained before this took the console over.
            if READY not in self.console.tail():
                self.console.expect([READY], timeout, "the guest init", self.health)
            # The shell starts after the banner and may drop part of what was
            # typed before its line editor ran (half a quoted word leaves it
            # waiting for the rest): ask again after a Ctrl-C that discards
            # the pending input, each time waiting a bit longer.
            deadline = time.monotonic() + timeout
            attempt = 2.0
            while True:
                try:
                    self.sync(min(attempt, max(0.1, deadline - time.monotonic())))
                    break
                except GuestTimeout:
                    if time.monotonic() >= deadline:
                        raise
                    self.console.send("\x03")
                    attempt *= 2
        if self.log is not None and not self.log.tail():
            note(
                f"warning: the kernel on {self.name} wrote nothing to {self.log.name}; "
                "its log is not checked (does it have CONFIG_SERIAL_EARLYCON?)"
            )
            self.log = None

    def sync(self, timeout: float = 30.0) -> None:
        """Read up to a fresh marker, whatever the console printed before."""
        typed, printed = self._marker("S", next(self._ids))
        with self.console.driven():
            self.console.send(f"echo {typed}\n")
            self.console.expect([rf"{printed}\r?\n"], timeout, "the shell to answer", self.health)

    def _line(self, command: str, n: int, flush: str) -> str:
        begin, _ = self._marker("B", n)
        end, _ = self._marker("E", n)
        flush = f"{flush}; " if flush else ""
        return f"echo {begin}; {command}; mkh_s=$?; {flush}echo {end}:$mkh_s\n"

    def run(
        self, command: str, timeout: float = DEFAULT_TIMEOUT, recover: bool = True
    ) -> Completed:
        """Run a shell command line in a child shell; its output (LF line ends) and status.

        A timeout raises GuestTimeout after recovering the shell (diagnostics,
        Ctrl-C, resync); with `recover=False` the shell is just marked unusable.
        """
        if self._busy and not self.unusable:
            # The last command was cut short by an error (a crash, say): it
            # may still run.  Interrupt it and get back in step first.
            self._interrupt(RESYNC_TIMEOUT if recover else min(timeout, RESYNC_TIMEOUT))
        if self.unusable:
            raise ShellUnusable(self.name, self.unusable)
        n = next(self._ids)
        with LogSync(self.log, f"mkh-sync-{self._nonce}-{n}-done", self.kmsg) as synced:
            line = self._line(f"sh -c {shlex.quote(command)}", n, synced.line)
            # Control characters (a TAB, ^U...) would drive the line editor.
            if len(line) > MAX_LINE or not command.isprintable() or not command.isascii():
                script = f"/tmp/.mkh-cmd-{self._nonce}-{n}"
                self.write_file(script, command.encode() + b"\n")
                line = self._line(f"sh {script}", n, synced.line)
            done = self._send(line, command, n, timeout, recover)
            synced.wait(command, self.health)
        return done

    def _send(self, line: str, command: str, n: int, timeout: float, recover: bool) -> Completed:
        """Type `line` and read the output between its markers."""
        _, begin = self._marker("B", n)
        _, end = self._marker("E", n)
        with self.console.driven():
            self.console.send(line)
            self._busy = True
            try:
                self.console.expect([rf"{begin}\r?\n"], timeout, f"{command!r}", self.health)
                self.console.expect(
                    [rf"{end}:(\d+)\r?\n"], timeout, f"{command!r} to finish", self.health
                )
            except GuestTimeout:
                if not recover:
                    self.unusable = f"{command!r} timed out"
                    raise
                try:
                    if self.on_timeout is not None:
                        self.on_timeout(self)
                except Exception as exc:  # diagnostics must not hide the timeout
                    note(f"hang diagnostics failed: {exc}")
                finally:
                    self._interrupt(RESYNC_TIMEOUT)
                raise
            self._busy = False
            child = self.console.child
            output = str(child.before).replace("\r\n", "\n")
            assert child.match is not None and not isinstance(child.match, type)
            return Completed(output, int(child.match.group(1)))

    def _interrupt(self, timeout: float) -> None:
        """Ctrl-C to whatever runs, then a resync; a shell that does not come back is unusable.

        A second Ctrl-C follows when the first got no answer: a command the
        shell had not started yet when the first came (a loaded machine) may
        run by then and read the resync line as its input.
        """
        deadline = time.monotonic() + timeout
        for left in (2, 1):
            try:
                self.console.send("\x03")
                self.sync(max(0.1, (deadline - time.monotonic()) / left))
            except GuestTimeout:
                continue
            except GuestExited:
                break
            self._busy = False
            return
        self.unusable = "it did not answer after its command was interrupted"

    def assume_busy(self) -> None:
        """Somebody else typed on this console: interrupt and resync before the next command."""
        self._busy = True

    def flush(self, timeout: float = LOG_SYNC_TIMEOUT, recover: bool = True) -> None:
        """Make sure everything the kernel logged so far has been read and crash-checked."""
        self.run(":", timeout, recover)

    def write_file(self, path: str, data: bytes) -> None:
        """Create a file with exactly `data`, through the console."""
        encoded = base64.b64encode(data).decode()
        staging = shlex.quote(path + ".b64")
        self.check(f": > {staging}")
        for start in range(0, len(encoded), CHUNK):
            self.check(f"echo {encoded[start : start + CHUNK]} >> {staging}")
        self.check(f"base64 -d {staging} > {shlex.quote(path)} && rm {staging}")

    def take_crash(self, watch: bool = True) -> Crash | None:
        """Acknowledge an expected crash of this shell's kernel (its console or its log).

        `watch=False` stops crash checks of this kernel (see Console.take_crash).
        """
        self.crash_acknowledged = True
        crashes = [self.console.take_crash(watch)]
        if self.log is not None:
            crashes.append(self.log.take_crash(watch))
        return next((c for c in crashes if c is not None), None)
