"""The stand-in lab machine's power switch, as a lab's power command would be.

Usage: power.py QMP_SOCKET on|off|cycle.  QEMU keeps running either way:
off stops the CPUs, on and cycle reset the machine, which boots its own OS
(the stock kernel it was started with) again.
"""

from __future__ import annotations

import sys

from qemu.qmp.legacy import QEMUMonitorProtocol

ACTIONS = {"on": ("system_reset", "cont"), "off": ("stop",), "cycle": ("system_reset", "cont")}


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] not in ACTIONS:
        print("usage: power.py QMP_SOCKET on|off|cycle", file=sys.stderr)
        return 2
    monitor = QEMUMonitorProtocol(argv[0])
    monitor.connect()
    try:
        for command in ACTIONS[argv[1]]:
            monitor.cmd(command)
    finally:
        monitor.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
