"""Instances' consoles over shared memory: /dev/mkcon<id> in the host, mkcon0 in the instance.

A spawned kernel given `console=mkcon0` logs to a ring in its instance's
shared area and runs the mkh init's shell there (`mkh.tty=mkcon0`); it needs
no UART.  The harness reaches that console through the host: `mkctl console`
relays /dev/mkcon<id> over a channel of its own on the host's SSH
connection (a console transport has only the one line the host's shell
holds).  The stream is logged to console-mkcon<id>.log and crash-checked
with the target's other consoles; the shell and the kernel log share it, as
on any serial console, in the order the instance wrote them.
"""

from __future__ import annotations

import select
import shlex
import socket
import threading

import paramiko

from harness.core.errors import InfraError
from harness.target.console import Console
from harness.target.protocol import Target
from harness.target.shell import Shell
from harness.target.ssh import SshChannel

# An instance's kernel command line for its console over shared memory.
KERNEL_PARAMS = "console=mkcon0 ignore_loglevel mkh.tty=mkcon0"
# How long the relay waits for the device: it starts before the instance does.
DEVICE_WAIT = 60
READ_SIZE = 65536


def name(mk_id: int) -> str:
    """The console's name in logs and messages: mkcon<id>, as the host's device."""
    return f"mkcon{mk_id}"


def relay_command(mk_id: int, wait: int = DEVICE_WAIT) -> str:
    return shlex.join(["mkctl", "console", "--id", str(mk_id), "--timeout", str(wait)])


class ChannelStream:
    """A socket whose other end is an SSH channel, for a Console to read and write.

    A thread copies between them until either side ends; the channel's end
    is the socket's end of file.
    """

    def __init__(self, channel: paramiko.Channel, label: str) -> None:
        self._channel = channel
        self._mine, self._theirs = socket.socketpair()
        self._pump = threading.Thread(target=self._copy, name=f"relay-{label}", daemon=True)
        self._pump.start()

    def fileno(self) -> int:
        return self._theirs.fileno()

    def close(self) -> None:
        self._theirs.close()
        self._pump.join(timeout=5)

    def _copy(self) -> None:
        channel, mine = self._channel, self._mine
        try:
            while True:
                # A paramiko channel's fileno() is readable when it has data.
                ready, _, _ = select.select([channel.fileno(), mine.fileno()], [], [], 1.0)
                if channel.fileno() in ready:
                    data = channel.recv(READ_SIZE)
                    if not data:
                        break
                    mine.sendall(data)
                if mine.fileno() in ready:
                    data = mine.recv(READ_SIZE)
                    if not data:
                        break
                    channel.sendall(data)
        except OSError:
            pass
        finally:
            channel.close()
            mine.close()


def host_channel(target: Target) -> SshChannel:
    """The host's SSH connection, which carries instances' consoles; InfraError without one."""
    if target.ssh is None:
        raise InfraError(
            "an instance without a UART is reached through a second channel to the host, "
            "which needs SSH (--transport ssh)"
        )
    return target.ssh


def attach(target: Target, mk_id: int) -> Shell:
    """A Shell on the console of instance `mk_id`, logged and crash-checked from now on.

    Attach before the instance starts: the relay waits for the device and
    so misses nothing the kernel prints.
    """
    label = name(mk_id)
    channel = host_channel(target).open_stream(relay_command(mk_id))
    console = Console(label, ChannelStream(channel, label), target.run_dir.console_log(label))
    console.watch()
    return target.console_shell(console)
