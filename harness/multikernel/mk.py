"""Drive a kernel's multikernel interface through its commands (console or SSH).

Upload DTBs to /sys/fs/multikernel, read instances, load, unload, start,
halt and ping kernels with the guest's `mkctl`, and read /proc/kimage and the
pool in /proc/iomem.  Operations that can fail return the errno name the guest saw
(None on success), so tests assert exactly what the kernel answered.
"""

from __future__ import annotations

import errno
import os
import re
import shlex
import time
from dataclasses import dataclass

from harness.build.initramfs import BOOT_INITRAMFS, BOOT_KERNEL
from harness.core.errors import InfraError
from harness.multikernel import dtb, mkcon
from harness.target import uarts
from harness.target.instances import InstanceConsoles
from harness.target.protocol import CommandProtocol
from harness.target.shell import Shell

ROOT = "/sys/fs/multikernel"
# A spawned kernel's console: a UART of the target's (QEMU's ttyS1-ttyS3, in
# order), or MKCON, its console over shared memory (harness/multikernel/mkcon.py).
MKCON = "mkcon"
SPAWN_TIMEOUT = 300.0
POOL_NAME = "Multikernel Memory Pool"
_STRERROR = {os.strerror(code): name for code, name in errno.errorcode.items()}
_KIMAGE_ROW = re.compile(r'^(\d+)\s+(\S+)\s+0x([0-9a-fA-F]+)\s+(\d+)\s+(\S+)\s+"(.*)"$')
_IOMEM_ROW = re.compile(r"^( *)([0-9a-f]+)-([0-9a-f]+) : (.*)$")
_PING_REPLY = re.compile(r"^reply from \d+: seq=\d+ size=\d+ time=([0-9.]+) us$", re.M)


def errno_name(message: str) -> str | None:
    """The errno a command's error output names, by its symbol or its strerror text."""
    for word in re.findall(r"\bE[A-Z0-9]+\b", message):
        if word in errno.__dict__:
            return str(word)
    found = [text for text in _STRERROR if text in message]
    return _STRERROR[max(found, key=len)] if found else None


@dataclass(frozen=True)
class Outcome:
    """How a guest operation ended: errno None on success."""

    errno: str | None
    output: str

    @property
    def ok(self) -> bool:
        return self.errno is None


@dataclass(frozen=True)
class Transaction:
    """An overlay the kernel applied: overlays/tx_<id> (INTERFACE §9)."""

    id: int
    status: str
    instance: str  # the target-path of its first fragment

    @property
    def path(self) -> str:
        return f"{ROOT}/overlays/tx_{self.id}"


@dataclass(frozen=True)
class Kimage:
    mk_id: int
    type: str
    start: int
    segments: int
    mode: str
    cmdline: str


@dataclass(frozen=True)
class Region:
    start: int
    end: int  # inclusive, as /proc/iomem prints it
    name: str

    @property
    def size(self) -> int:
        return self.end - self.start + 1

    def contains(self, start: int, size: int) -> bool:
        return self.start <= start and start + size - 1 <= self.end


@dataclass(frozen=True)
class Pool:
    region: Region
    children: tuple[Region, ...]

    @property
    def free(self) -> int:
        return self.region.size - sum(child.size for child in self.children)

    def child(self, name: str) -> Region | None:
        return next((c for c in self.children if c.name == name), None)


def parse_kimage(text: str) -> list[Kimage]:
    """Rows of /proc/kimage; [] for "No kimages loaded"."""
    rows = []
    for line in text.splitlines():
        match = _KIMAGE_ROW.match(line.strip())
        if match:
            mk_id, kind, start, segs, mode, cmdline = match.groups()
            rows.append(Kimage(int(mk_id), kind, int(start, 16), int(segs), mode, cmdline))
    return rows


def parse_ping(output: str) -> list[float]:
    """Round-trip times in microseconds, one per reply `mkctl ping` printed."""
    return [float(us) for us in _PING_REPLY.findall(output)]


def parse_pool(iomem: str) -> Pool | None:
    """The multikernel pool and the regions nested directly under it."""
    pool: Region | None = None
    depth = 0
    children: list[Region] = []
    for line in iomem.splitlines():
        match = _IOMEM_ROW.match(line)
        if not match:
            continue
        indent = len(match.group(1))
        region = Region(int(match.group(2), 16), int(match.group(3), 16), match.group(4))
        if pool is None:
            if region.name == POOL_NAME:
                pool, depth = region, indent
        elif indent <= depth:
            break
        elif indent == depth + 2:
            children.append(region)
    return Pool(pool, tuple(children)) if pool else None


@dataclass(frozen=True)
class InstanceView:
    """One instance as a kernel's /sys/fs/multikernel shows it."""

    name: str
    id: int
    status: str
    device_tree_source: str


def instance_view(shell: CommandProtocol, name: str) -> InstanceView:
    """Instance `name` as the kernel behind `shell` shows it."""
    path = f"{ROOT}/instances/{shlex.quote(name)}"
    return InstanceView(
        name=name,
        id=int(shell.check(f"cat {path}/id")),
        status=shell.check(f"cat {path}/status").strip(),
        device_tree_source=shell.check(f"cat {path}/device_tree_source"),
    )


def instance_views(shell: CommandProtocol) -> dict[str, InstanceView]:
    """Every instance the kernel behind `shell` lists, with its files."""
    names = shell.check(f"ls {ROOT}/instances").split()
    return {name: instance_view(shell, name) for name in names}


class Multikernel:
    """The multikernel interface of one kernel: its commands, and the consoles it spawns on."""

    def __init__(self, commands: CommandProtocol, instance_consoles: InstanceConsoles) -> None:
        self.commands = commands
        self.instance_consoles = instance_consoles
        self.spawned: dict[str, Shell] = {}
        # The console each instance's loaded kernel was given (a UART or MKCON), by id.
        self.console_of: dict[int, str] = {}
        self.names: dict[int, str] = {}
        # Seconds from the exec call to the instance's shell prompt.
        self.spawn_seconds: dict[str, float] = {}

    def _outcome(self, command: str, timeout: float = 60.0) -> Outcome:
        done = self.commands.run(command, timeout=timeout)
        if done.status == 0:
            return Outcome(None, done.output)
        return Outcome(errno_name(done.output) or f"status {done.status}", done.output)

    def upload(self, blob: bytes, staging: str = "/tmp/mkh-upload.dtb") -> Outcome:
        """Write a DTB to device_tree in one write(2).

        (busybox cat tries sendfile first and then write, so a refused DTB
        would be offered to the kernel twice.)
        """
        self.commands.write_file(staging, blob)
        return self._outcome(f"dd if={staging} of={ROOT}/device_tree bs=1M 2>&1")

    def instances(self) -> list[str]:
        return sorted(self.commands.check(f"ls {ROOT}/instances").split())

    def overlay(self, blob: bytes, staging: str = "/tmp/mkh-overlay.dtbo") -> Outcome:
        """Write a compiled overlay to overlays/new in one write(2): one transaction."""
        self.commands.write_file(staging, blob)
        return self._outcome(f"dd if={staging} of={ROOT}/overlays/new bs=1M 2>&1")

    def apply_overlay(self, blob: bytes) -> Transaction:
        """Apply an overlay and return its transaction; InfraError with the errno if refused."""
        before = {tx.id for tx in self.transactions()}
        self.must(self.overlay(blob), "applying an overlay")
        made = [tx for tx in self.transactions() if tx.id not in before]
        if len(made) != 1:
            raise InfraError(
                f"the overlay was applied, but overlays/ shows {len(made)} new transactions"
            )
        return made[0]

    def transactions(self) -> list[Transaction]:
        """Every transaction overlays/ lists, oldest first."""
        names = self.commands.check(f"ls {ROOT}/overlays").split()
        ids = sorted(int(name[3:]) for name in names if re.fullmatch(r"tx_\d+", name))
        return [self.transaction(tx_id) for tx_id in ids]

    def transaction(self, tx_id: int) -> Transaction:
        path = f"{ROOT}/overlays/tx_{tx_id}"
        return Transaction(
            id=int(self.commands.check(f"cat {path}/id")),
            status=self.commands.check(f"cat {path}/status").strip(),
            instance=self.commands.check(f"cat {path}/instance").strip(),
        )

    def rollback(self, tx: Transaction) -> Outcome:
        """rmdir the transaction: the kernel applies its inverse, or refuses (EBUSY) untouched."""
        return self._outcome(f"rmdir {tx.path}")

    def read(self, name: str, attribute: str) -> str:
        return self.commands.check(f"cat {ROOT}/instances/{shlex.quote(name)}/{attribute}")

    def status(self, name: str) -> str:
        return self.read(name, "status").strip()

    def remove(self, name: str) -> Outcome:
        """rmdir the instance (a failed one's kernel is stopped and its shell retired)."""
        outcome = self._outcome(f"rmdir {ROOT}/instances/{shlex.quote(name)}")
        if outcome.ok:
            for mk_id in [i for i, n in self.names.items() if n == name]:
                self._retire(mk_id, "its instance was removed")
                self.console_of.pop(mk_id, None)
        return outcome

    def load(
        self,
        mk_id: int,
        kernel: str = BOOT_KERNEL,
        initrd: str | None = BOOT_INITRAMFS,
        cmdline: str | None = None,
        debug: bool = False,
    ) -> Outcome:
        """`mkctl load`; with debug the kernel logs every segment it places."""
        args = ["mkctl", "load", "--id", str(mk_id), "--kernel", kernel]
        if initrd:
            args += ["--initrd", initrd]
        if cmdline is not None:
            args += ["--cmdline", cmdline]
        if debug:
            args.append("--debug")
        return self._outcome(shlex.join(args))

    def unload(self, mk_id: int) -> Outcome:
        outcome = self._outcome(f"mkctl unload --id {mk_id}")
        if outcome.ok:
            self.console_of.pop(mk_id, None)
        return outcome

    def exec(self, mk_id: int) -> Outcome:
        return self._outcome(f"mkctl exec --id {mk_id}")

    def halt(self, mk_id: int, force: bool = False) -> Outcome:
        """`mkctl halt`: stop the kernel in instance `mk_id` (by NMI with `force`).

        Once halted, the instance's Shell is retired: using it raises
        ShellUnusable instead of waiting on a console nobody answers.  A
        coverage kernel's counts are saved first (not with `force`: that is
        for a kernel that may not answer).
        """
        shell = self.spawned.get(self.names.get(mk_id, ""))
        if shell is not None and not force and not (shell.unusable or shell.crash_acknowledged):
            self.instance_consoles.save_coverage(shell)
        outcome = self._outcome(f"mkctl halt --id {mk_id}" + (" --force" if force else ""))
        if outcome.ok:
            self._retire(mk_id, "its instance was halted")
        return outcome

    def _retire(self, mk_id: int, why: str) -> None:
        shell = self.spawned.pop(self.names.get(mk_id, ""), None)
        if shell is not None:
            self.instance_consoles.release(shell, why)

    def ping(self, mk_id: int, count: int = 3, size: int = 16) -> Outcome:
        """`mkctl ping` from the host; parse_ping() reads the round trips."""
        return self._outcome(f"mkctl ping --id {mk_id} --count {count} --size {size}")

    def wait_status(self, name: str, state: str, timeout: float = 30.0) -> Outcome:
        """Wait until instance `name` reads `state`, woken by the kernel's status notification."""
        seconds = max(1, round(timeout))
        command = f"mkctl wait --name {shlex.quote(name)} --state {shlex.quote(state)}"
        return self._outcome(f"{command} --timeout {seconds}", timeout=timeout + 60)

    def views(self) -> dict[str, InstanceView]:
        """Every instance as the host lists it: to compare across a host live update."""
        return instance_views(self.commands)

    def view(self, name: str) -> InstanceView:
        """The host's view of instance `name`."""
        return instance_view(self.commands, name)

    def restored(self, shell: Shell) -> dict[str, InstanceView]:
        """The instances a spawned kernel restored from its handover, as it shows them."""
        return instance_views(shell)

    def kimages(self) -> list[Kimage]:
        return parse_kimage(self.commands.check("cat /proc/kimage"))

    def pool(self) -> Pool | None:
        return parse_pool(self.commands.check("cat /proc/iomem"))

    def set_cpu_online(self, cpu: int, online: bool) -> None:
        self.commands.check(f"echo {int(online)} > /sys/devices/system/cpu/cpu{cpu}/online")

    def free_console(self) -> str:
        """The next free UART of the target's, else MKCON (which any number can have)."""
        # A halted kernel keeps its console for when it starts again.
        used = {shell.console.name for shell in self.spawned.values()}
        used |= set(self.console_of.values())
        return next((tty for tty in self.instance_consoles.uarts if tty not in used), MKCON)

    def spawn(
        self,
        inst: dtb.Instance,
        console: str | None = None,
        cmdline: str = "",
        timeout: float = SPAWN_TIMEOUT,
        pause: float = 0.0,
    ) -> Shell:
        """Start a kernel in `inst` and return the shell on its console.

        stage() it, then start() it: the mkh init's shell on `console`, a
        UART (the kernel logs to its own stream, see
        harness/target/uarts.py) or MKCON, the console over shared memory
        that carries both (harness/multikernel/mkcon.py).  `pause` seconds
        pass between the load and the start.
        """
        self.stage(inst, console, cmdline)
        time.sleep(pause)
        return self.start(inst, timeout)

    def stage(self, inst: dtb.Instance, console: str | None = None, cmdline: str = "") -> None:
        """Make `inst` ready to start(): loaded, its CPUs offline ("loading").

        Creates the instance unless it exists, loads /boot/bzImage with the
        guest's initramfs for `console` (the next free UART by default, else
        MKCON) and takes the instance's CPUs offline.  Any refusal raises
        InfraError with the errno.
        """
        console = console or self.free_console()
        if console == MKCON:
            self.instance_consoles.check_relay()  # refused before anything is loaded
            params = f"{mkcon.KERNEL_PARAMS} {cmdline}"
        elif console in self.instance_consoles.uarts:
            params = f"{uarts.kernel_params(console)} mkkernel_uart={console} {cmdline}"
        else:
            names = ", ".join(self.instance_consoles.uarts) or "none here"
            raise InfraError(f"no console {console!r} for an instance ({MKCON}, or UARTs: {names})")
        if inst.name not in self.instances():
            self.must(self.upload(dtb.to_dtb([inst])), f"creating instance {inst.name}")
        self.must(
            self.load(inst.id, cmdline=params.strip()),
            f"loading a kernel into {inst.name}",
        )
        self.console_of[inst.id] = console
        for cpu in inst.cpus:
            self.set_cpu_online(cpu, False)

    def start(self, inst: dtb.Instance, timeout: float = SPAWN_TIMEOUT) -> Shell:
        """Start the kernel loaded into `inst` (again, after a halt) and wait for its shell."""
        console = self.console_of.get(inst.id)
        if console is None:
            raise InfraError(f"no kernel was loaded into {inst.name} by this harness")
        # A shell of the kernel that ran there before (it stopped on its own).
        self._retire(inst.id, "its instance was started again")
        if console == MKCON:
            # Attached before the start, so that nothing the kernel prints is missed.
            shell = mkcon.attach(self.instance_consoles, inst.id)
        else:
            shell = self.instance_consoles.uart_shell(console)
        stream = shell.console
        try:
            with stream.driven():  # from before the start, so no output is missed
                # The banner of a kernel that ran here before is not this one's.
                stream.forget_tail()
                started = time.monotonic()
                self.must(self.exec(inst.id), f"starting {inst.name}")
                shell.wait_ready(timeout)
        except BaseException:
            self.instance_consoles.release(shell)  # nothing to flush or ask for backtraces there
            raise
        self.spawn_seconds[inst.name] = time.monotonic() - started
        self.spawned[inst.name] = shell
        self.names[inst.id] = inst.name
        self.instance_consoles.logged.add(inst.name)  # its console carries its log
        return shell

    @staticmethod
    def must(outcome: Outcome, what: str) -> None:
        if not outcome.ok:
            raise InfraError(f"{what} failed: {outcome.errno}: {outcome.output.strip()}")
