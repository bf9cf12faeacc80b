"""What the harness saves when a guest hangs, before it interrupts or stops anything.

- `hang-registers.txt`: every vCPU's registers (QMP `info registers -a`), the
  host's and the spawned kernels' CPUs alike, each RIP named from System.map.
- `hang-<log stream>.txt`: what each kernel logged after it was asked for its
  CPU backtraces (SysRq l) and blocked tasks (SysRq w).  The host kernel is
  asked through the PS/2 keyboard (QMP send-key, handled in the kernel, so it
  works while the host's shell is stuck); a spawned kernel through
  /proc/sysrq-trigger from its shell, unless that shell is the stuck one.
- `hang-report.txt`: which console timed out, and where each CPU was.
"""

from __future__ import annotations

import bisect
import contextlib
import re
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from qemu.qmp import QMPError

from harness.build.kernel import companions
from harness.core.errors import HarnessError
from harness.target import uarts
from harness.target.machine import Machine
from harness.target.shell import Shell

SETTLE = 3.0  # seconds for the kernels to print what SysRq asked for
_RIP = re.compile(r"^CPU#(\d+).*?\bRIP=([0-9a-f]+)", re.S | re.M)


class Symbols:
    """Address to `symbol+offset` from a System.map."""

    def __init__(self, system_map: Path) -> None:
        pairs = []
        for line in system_map.read_text(errors="replace").splitlines():
            fields = line.split()
            if len(fields) == 3 and fields[1] in "tTwW":
                pairs.append((int(fields[0], 16), fields[2]))
        pairs.sort()
        self._addrs = [a for a, _ in pairs]
        self._names = [n for _, n in pairs]

    def name(self, addr: int) -> str:
        index = bisect.bisect_right(self._addrs, addr) - 1
        if index < 0:
            return "?"
        return f"{self._names[index]}+{addr - self._addrs[index]:#x}"


def cpu_locations(registers: str, symbols: Symbols | None) -> list[str]:
    """One line per vCPU: its RIP and, when known, the function it is in."""
    lines = []
    for cpu, rip in _RIP.findall(registers):
        where = f" {symbols.name(int(rip, 16))}" if symbols else ""
        lines.append(f"CPU#{cpu} RIP={rip}{where}")
    return lines


def _log_sizes(machine: Machine, relayed: Iterable[str]) -> dict[str, int]:
    """The size of every kernel log stream's file: the log ports', and instances' mkcon."""
    sizes = {}
    for name in [*machine.consoles, *relayed]:
        if name not in uarts.SHELL_TTYS:
            path = machine.run.console_log(name)
            sizes[path.name] = path.stat().st_size if path.exists() else 0
    return sizes


def capture(
    machine: Machine,
    kernel: Path,
    shells: Sequence[Shell],
    stuck: Shell | None,
    relayed: Iterable[str] = (),
) -> None:
    """Save the hang's evidence; `stuck` is the shell that timed out (None: the SSH channel).

    `relayed` names the consoles relayed over SSH (instances' mkcon), logs too.
    """
    run = machine.run
    report = [f"timed out on {stuck.name if stuck is not None else 'ssh'}"]
    try:
        registers = machine.hmp("info registers -a")
    except (QMPError, OSError, HarnessError) as exc:
        registers = f"QMP did not answer: {exc}"
    run.file("hang-registers.txt").write_text(registers)
    system_map = companions(kernel).system_map
    report += cpu_locations(registers, Symbols(system_map) if system_map else None)

    before = _log_sizes(machine, relayed)
    with contextlib.suppress(QMPError, OSError, HarnessError):
        for key in ("l", "w"):
            machine.send_sysrq(key)
    for shell in shells:
        if shell is stuck or shell.unusable or shell.name == uarts.HOST_TTY:
            continue
        try:
            shell.run("echo l > /proc/sysrq-trigger; echo w > /proc/sysrq-trigger", timeout=10)
        except HarnessError as exc:
            report.append(f"{shell.name}: no backtraces: {exc}")
    time.sleep(SETTLE)
    for name, offset in before.items():
        path = run.file(name)
        if not path.exists():
            continue
        with path.open("rb") as log:
            log.seek(offset)
            text = log.read()
        if text:
            saved = run.file("hang-" + name.removeprefix("console-").removesuffix(".log") + ".txt")
            saved.write_bytes(text)
            report.append(f"{saved.name}: what {name} showed after SysRq l and w")
    run.file("hang-report.txt").write_text("\n".join(report) + "\n")
