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

import shlex

from harness.target.instances import InstanceConsoles
from harness.target.shell import Shell

# An instance's kernel command line for its console over shared memory.
KERNEL_PARAMS = "console=mkcon0 ignore_loglevel mkh.tty=mkcon0"
# How long the relay waits for the device: it starts before the instance does.
DEVICE_WAIT = 60


def name(mk_id: int) -> str:
    """The console's name in logs and messages: mkcon<id>, as the host's device."""
    return f"mkcon{mk_id}"


def relay_command(mk_id: int, wait: int = DEVICE_WAIT) -> str:
    return shlex.join(["mkctl", "console", "--id", str(mk_id), "--timeout", str(wait)])


def attach(consoles: InstanceConsoles, mk_id: int) -> Shell:
    """A Shell on the console of instance `mk_id`, logged and crash-checked from now on.

    Attach before the instance starts: the relay waits for the device and
    so misses nothing the kernel prints.
    """
    return consoles.relayed_shell(name(mk_id), relay_command(mk_id))
