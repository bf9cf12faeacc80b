"""Exception types, and the one table of what each means for a run: its verdict and exit code."""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path

# Exit codes of `mkh run` for outcomes that are not the guest command's own
# status.  They are documented in docs/runs-and-results.md (Exit codes);
# keep the two in step.
EXIT_CRASH = 123
EXIT_TIMEOUT = 124
EXIT_INFRA = 125
EXIT_SIGNAL = 128  # plus the signal's number, as shells report a death by signal
EXIT_FAIL = 1  # a failed test (a failed command keeps its own status)


class HarnessError(Exception):
    """Base class: something the harness could not do."""


class InfraError(HarnessError):
    """The host side failed: a missing tool, a failed build, QEMU refused to start."""

    def __init__(self, message: str, log: Path | None = None) -> None:
        super().__init__(message)
        self.log = log

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text} (log: {self.log})" if self.log else text


class GuestTimeout(HarnessError):
    """A wait on a guest console ran out of time."""

    def __init__(self, console: str, what: str, timeout: float, tail: str) -> None:
        super().__init__(f"timeout after {timeout:g}s on {console} waiting for {what}")
        self.console = console
        self.tail = tail


class KernelCrash(HarnessError):
    """A crash signature appeared on a console stream."""

    def __init__(
        self, console: str, kind: str, line: str, excerpt: str, where: str | None = None
    ) -> None:
        super().__init__(f"kernel crash ({kind}) on {where or console}: {line.strip()}")
        self.console = console
        self.kind = kind
        self.line = line
        self.excerpt = excerpt


QEMU_EXITED = "QEMU exited"  # what the end of a QEMU console's stream means


class GuestExited(HarnessError):
    """A console's stream ended while the harness still expected the guest to run.

    With `-no-reboot` that is QEMU ending because its guest reset or powered
    off on its own (a triple fault, say): a kernel failure, so it counts as a
    crash.  `ended` says what ended when it was not QEMU (a lab's console
    server, an SSH relay).
    """

    def __init__(
        self, console: str, tail: str, returncode: int | None = None, ended: str = QEMU_EXITED
    ) -> None:
        status = "" if returncode is None else f" with status {returncode}"
        super().__init__(f"{ended}{status} while waiting on {console}")
        self.console = console
        self.tail = tail
        self.returncode = returncode


class ConnectionLost(HarnessError):
    """The connection to a guest broke while the guest still runs (its SSH server, say).

    The machine's health was checked first: a guest that crashed or ended
    raised that instead. What is left is the harness's connection failing.
    """

    def __init__(self, console: str, detail: str) -> None:
        super().__init__(f"{console}: the connection broke while the guest still runs: {detail}")
        self.console = console
        self.detail = detail


class GuestCommandFailed(HarnessError, AssertionError):
    """A guest command that had to succeed did not."""

    def __init__(self, console: str, command: str, status: int, output: str) -> None:
        super().__init__(f"{console}: {command!r} exited {status}:\n{output}")
        self.status = status
        self.output = output


class Interrupted(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP arrived: unwind like Ctrl-C so QEMU is stopped and logs kept."""

    def __init__(self, signum: int) -> None:
        self.signal = signal.Signals(signum)
        super().__init__(self.signal.name)


@dataclass(frozen=True)
class Verdict:
    """How a run ended (result.json's `verdict`) and the status it stands for."""

    name: str
    exit_code: int


# The verdict of each error, the first class that matches; any other error is INFRA.
VERDICTS: tuple[tuple[type[BaseException], Verdict], ...] = (
    (KernelCrash, Verdict("CRASH", EXIT_CRASH)),
    (GuestExited, Verdict("CRASH", EXIT_CRASH)),  # the guest ended by itself
    (GuestTimeout, Verdict("TIMEOUT", EXIT_TIMEOUT)),
    (AssertionError, Verdict("FAIL", EXIT_FAIL)),  # in a test, also a failed guest.check
)
INFRA = Verdict("INFRA", EXIT_INFRA)


def verdict(error: BaseException | None, status: int = 0) -> Verdict:
    """The verdict of a run that raised `error`, or else ended with a command's `status`."""
    if error is None:
        return Verdict("PASS", 0) if status == 0 else Verdict("FAIL", status)
    if isinstance(error, KeyboardInterrupt):
        signum = error.signal if isinstance(error, Interrupted) else signal.SIGINT
        return Verdict("INTERRUPTED", EXIT_SIGNAL + signum)
    return next((found for kind, found in VERDICTS if isinstance(error, kind)), INFRA)


def exit_code(error: BaseException) -> int:
    """The status `mkh` exits with after `error`: its verdict's.

    Except a failed assertion: to `mkh` that is a guest command the harness
    itself needed (GuestCommandFailed) failing, which is the harness's failure.
    """
    found = verdict(error)
    return EXIT_INFRA if found.name == "FAIL" else found.exit_code
