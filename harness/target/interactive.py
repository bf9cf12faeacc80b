"""Attach the user's terminal to a guest console or an SSH login (for `mkh shell`)."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import termios
import tty
from collections.abc import Callable, Iterator

import pexpect

from harness.target.console import Console
from harness.target.pump import READ_SIZE, Peer, Stream, pump
from harness.target.shell import Shell
from harness.target.ssh import SshConnection

ESCAPE = b"\x1d"  # Ctrl-]


def attach(shell: Shell, check_crashes: Callable[[], None]) -> None:
    """Relay the terminal and a shell's console until Ctrl-] or the guest ends.

    Console output still passes through the log and crash detector;
    `check_crashes` reports a crash when the session ends.
    """
    console = shell.console
    stdin = sys.stdin.fileno()
    stdout = sys.stdout.fileno()
    if os.isatty(stdin):
        size = shutil.get_terminal_size()
        shell.run(f"stty rows {size.lines} cols {size.columns}")
    with console.driven():
        shell.assume_busy()  # whatever the user leaves running is interrupted before reuse
        relay(console, stdin, stdout)
    os.write(stdout, b"\r\n")
    check_crashes()


class Keys:
    """The user's side of a relay: keys from `stdin` until Ctrl-] or its end, output to `stdout`."""

    def __init__(self, stdin: int, stdout: int) -> None:
        self.stdin = stdin
        self.stdout = stdout

    def fileno(self) -> int:
        return self.stdin

    def read(self) -> bytes:
        keys = os.read(self.stdin, 1024)
        return b"" if ESCAPE in keys else keys

    def write(self, data: bytes) -> None:
        os.write(self.stdout, data)


class ConsoleEnd:
    """A console as a relay's end: read through it, so it stays logged and crash-checked."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def fileno(self) -> int:
        return int(self.console.child.child_fd)

    def read(self) -> bytes:
        try:
            data = self.console.child.read_nonblocking(READ_SIZE, timeout=0)
        except (pexpect.EOF, OSError):
            return b""
        return str(data).encode(errors="replace")

    def write(self, data: bytes) -> None:
        self.console.send(data.decode(errors="replace"))


def relay(console: Console, stdin: int, stdout: int) -> None:
    """Copy stdin to the console and the console to stdout until EOF, Ctrl-] or its end."""
    console.send("\n")
    with raw_terminal(stdin):
        pump(Keys(stdin, stdout), ConsoleEnd(console), alive=lambda: not console.closed)


def attach_ssh(channel: SshConnection, check_crashes: Callable[[], None]) -> None:
    """A login shell over SSH on a terminal of the user's size, until it exits or Ctrl-]."""
    stdin = sys.stdin.fileno()
    # The terminal's own size ($COLUMNS and $LINES may be stale).
    size = os.get_terminal_size(stdin) if os.isatty(stdin) else os.terminal_size((80, 24))
    term = os.environ.get("TERM", "vt100")
    session = channel.open_shell(term, size.columns, size.lines)
    try:
        relay_stream(session)  # the shell's exit ends its channel's stream
    finally:
        session.close()
    check_crashes()


def relay_stream(peer: Peer) -> None:
    """The terminal, in raw mode, to and from `peer` until its end, EOF or Ctrl-]."""
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    with raw_terminal(stdin):
        pump(Keys(stdin, stdout), Stream(peer))
    os.write(stdout, b"\r\n")


@contextlib.contextmanager
def raw_terminal(stdin: int) -> Iterator[None]:
    """The terminal in raw mode for the duration (nothing to do when stdin is no terminal)."""
    saved = termios.tcgetattr(stdin) if os.isatty(stdin) else None
    if saved is not None:
        tty.setraw(stdin)
    try:
        yield
    finally:
        # After a hang-up (SIGHUP) the terminal may be gone; nothing to restore then.
        if saved is not None:
            with contextlib.suppress(termios.error):
                termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
