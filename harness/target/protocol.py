"""The protocols a target's drivers implement, small and each for one purpose.

As in labgrid's `labgrid/protocol/`, but without its binding machinery: a
target exposes its drivers as attributes, and code asks for the protocol it
needs.

- `CommandProtocol`: run a shell command line, check one, write a file
  (the console shell, SSH, and a target, which hands them to one of those).
- `FileTransferProtocol`: copy files to and from the machine (SSH).
- `ConsoleProtocol`: a serial stream of a kernel, logged and crash-checked.
- `HealthProtocol`: the crashes (or the machine's end) seen so far.
- `QemuDebug`: QMP, the human monitor, SysRq and the gdbstub; only a QEMU
  target has it (`Target.debug` is None on a lab machine).
"""

from __future__ import annotations

import abc
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from harness.core.errors import GuestCommandFailed
from harness.target.crash import Crash

DEFAULT_TIMEOUT = 60.0


@dataclass(frozen=True)
class Completed:
    """What a command printed, and its exit status.

    `output` is all of it.  Where the transport keeps the streams apart
    (SSH), `stdout` and `stderr` hold each and `output` is stdout then
    stderr; a console carries one stream, and they are None.
    """

    output: str
    status: int
    stdout: str | None = None
    stderr: str | None = None


class CommandProtocol(abc.ABC):
    """Commands on one machine or kernel, named for error messages."""

    @property
    @abc.abstractmethod
    def name(self) -> str: ...

    @abc.abstractmethod
    def run(self, command: str, timeout: float = DEFAULT_TIMEOUT) -> Completed:
        """Run a shell command line in a child shell; what it printed and its status."""

    @abc.abstractmethod
    def write_file(self, path: str, data: bytes) -> None:
        """Create (or replace) file `path` with exactly `data`."""

    def check(self, command: str, timeout: float = DEFAULT_TIMEOUT) -> str:
        """Run a command that must succeed; its output."""
        done = self.run(command, timeout)
        if done.status != 0:
            raise GuestCommandFailed(self.name, command, done.status, done.output)
        return done.output


class FileTransferProtocol(abc.ABC):
    """Files between this host and the machine."""

    @abc.abstractmethod
    def put(self, local: Path, path: str, mode: int | None = None) -> None:
        """Copy host file `local` to `path`, with its mode (or `mode`)."""

    @abc.abstractmethod
    def get(self, path: str, local: Path) -> None:
        """Copy file `path` of the machine to host file `local`."""


class ConsoleProtocol(Protocol):
    """One serial stream of a kernel (a UART, a log port, mkcon), logged and crash-checked."""

    @property
    def name(self) -> str: ...

    @property
    def closed(self) -> bool: ...

    def send(self, text: str) -> None: ...

    def tail(self) -> str: ...

    def forget_tail(self) -> None: ...

    def expect_text(self, text: str) -> threading.Event: ...

    def take_crash(self, watch: bool = True) -> Crash | None: ...


class HealthProtocol(Protocol):
    """A machine's crash state."""

    def health(self) -> None:
        """Raise the kernel crash (or the machine's end) seen so far."""


class QemuDebug(Protocol):
    """What only QEMU offers: its monitor, keys sent to the guest, its run state."""

    @property
    def gdb_port(self) -> int | None: ...

    @property
    def accel(self) -> str: ...

    def qmp(self, command: str, **args: object) -> object: ...

    def hmp(self, command: str) -> str: ...

    def send_sysrq(self, key: str) -> None: ...

    def status(self) -> str: ...

    def running(self) -> bool: ...
