"""The two streams every kernel in a guest gets: a UART for its shell, a port for its log.

A kernel's shell UART (ttyS0 for the host, ttyS1-ttyS3 for spawned kernels)
is not a kernel console, so command output is never interleaved with kernel
messages.  The kernel's whole log, at every level, goes in-kernel to its own
QEMU debug port through the 8250 early console (`console=uart8250,io,PORT`
polls the line status register, which reads all ones on a port nothing
decodes, and writes each byte to the port).  No user space is involved: a
crash printed while the guest's user space is wedged still reaches the host.
"""

from __future__ import annotations

SHELL_TTYS = ("ttyS0", "ttyS1", "ttyS2", "ttyS3")
HOST_TTY = "ttyS0"
HOST_LOG_PORT = 0xE9
# ttyS<n> (n >= 1) logs to INSTANCE_LOG_BASE + LOG_PORT_STRIDE * (n - 1): an
# I/O range QEMU's pc machine leaves free, with room for the 8250 registers
# the early console touches (THR at +0, IER at +1, LSR at +5).
INSTANCE_LOG_BASE = 0x200
LOG_PORT_STRIDE = 8


def _index(tty: str) -> int:
    if tty not in SHELL_TTYS:
        raise ValueError(f"not a shell UART: {tty!r}")
    return SHELL_TTYS.index(tty)


def log_stream(tty: str) -> str:
    """The name of the log stream of the kernel whose shell is on `tty` (kmsg, kmsg1, ...)."""
    index = _index(tty)
    return "kmsg" if index == 0 else f"kmsg{index}"


def log_port(tty: str) -> int:
    index = _index(tty)
    return HOST_LOG_PORT if index == 0 else INSTANCE_LOG_BASE + LOG_PORT_STRIDE * (index - 1)


def kernel_params(tty: str) -> str:
    """Command-line parameters that give a kernel its log port and its shell UART.

    `mkh.tty=` tells the mkh init where to run the shell.
    """
    return f"console=uart8250,io,{log_port(tty):#x} ignore_loglevel mkh.tty={tty}"


def describe(stream: str) -> str:
    """A stream's name as users read it: `kmsg1 (kernel log of the ttyS1 instance)`."""
    for index, tty in enumerate(SHELL_TTYS):
        if stream == log_stream(tty):
            owner = "host" if index == 0 else f"{tty} instance"
            return f"{stream} (kernel log of the {owner})"
    if stream.startswith("mkcon") and stream[5:].isdigit():
        return f"{stream} (console over shared memory of instance {stream[5:]})"
    return stream
