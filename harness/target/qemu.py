"""A booted guest with a shell on its console: boot, run commands, tear down."""

from __future__ import annotations

import contextlib
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from harness.build import initramfs, kernel
from harness.build.images import Images
from harness.core.errors import GuestTimeout, InfraError
from harness.core.progress import note
from harness.core.rundir import RunDir
from harness.target import hang, sshd, uarts
from harness.target.console import Console
from harness.target.machine import Machine, MachineConfig, free_port
from harness.target.protocol import Lifecycle
from harness.target.shell import Result, Shell, ShellUnusable
from harness.target.ssh import SshChannel

# How the harness runs the host's commands: its shell on ttyS0, or SSH.
TRANSPORTS = ("console", "ssh")
# QEMU gets a port that was free a moment before; another process may take it first.
PORT_ATTEMPTS = 3


@dataclass
class GuestOptions:
    smp: int = 4
    memory: str = "2G"
    append: str = ""
    accel: str = "auto"
    boot_timeout: float = 120.0
    put: list[tuple[Path, str]] = field(default_factory=list)
    gdb_port: int | None = None
    transport: str = "console"
    # A labgrid environment: boot on that lab machine instead of QEMU (harness/target/lab.py).
    lab_env: Path | None = None


class Guest(Lifecycle):
    """A machine whose ttyS0 shell the harness drives.  Use as a context manager."""

    def __init__(
        self, images: Images, options: GuestOptions | None = None, run: RunDir | None = None
    ) -> None:
        self.images = images
        self.options = options or GuestOptions()
        self._owns_run = run is None  # a RunDir given by the caller is the caller's to close
        self.run_dir = run or RunDir()
        self.machine: Machine | None = None
        self._shell: Shell | None = None
        self.shells: list[Shell] = []  # the host's and every spawned kernel's
        self.ssh: SshChannel | None = None
        self._capturing = False

    @property
    def shell(self) -> Shell:
        assert self._shell is not None, "guest is not booted"
        return self._shell

    @property
    def console(self) -> Console:
        return self.shell.console

    def boot(self) -> Self:
        opts = self.options
        if opts.transport not in TRANSPORTS:
            raise InfraError(
                f"unknown transport {opts.transport!r} (one of {', '.join(TRANSPORTS)})"
            )
        if self.images.config is not None:
            self.run_dir.keep_config(self.images.config)
        files = list(opts.put)
        append = opts.append
        keys = None
        if opts.transport == "ssh":
            keys = sshd.make_keys(self.run_dir.file("ssh"))
            files += sshd.layer(keys)
            append = f"{append} {sshd.KERNEL_PARAM}".strip()
        initrd = initramfs.with_files(self.images.initrd, files, self.run_dir.file("initrd.img"))
        config = MachineConfig(
            kernel=self.images.kernel,
            initrd=initrd,
            append=append,
            smp=opts.smp,
            memory=opts.memory,
            accel=opts.accel,
            gdb_port=opts.gdb_port,
        )
        self._launch(config, with_ssh=keys is not None)
        if opts.gdb_port is not None:
            self._announce_gdb(opts.gdb_port)
        self._shell = self.new_shell(uarts.HOST_TTY)
        self._shell.wait_ready(opts.boot_timeout)
        if keys is not None:
            self._connect_ssh(keys, config)
        self.run_dir.mark("shell-ready")
        return self

    def _launch(self, config: MachineConfig, with_ssh: bool) -> None:
        for attempt in range(PORT_ATTEMPTS):
            if with_ssh:
                config.ssh_port = free_port()
            self.machine = Machine(config, self.run_dir)
            try:
                self.machine.launch()
                return
            except InfraError as exc:
                taken = with_ssh and "host forwarding" in str(exc)
                if not taken or attempt == PORT_ATTEMPTS - 1:
                    raise

    def _connect_ssh(self, keys: sshd.Keys, config: MachineConfig) -> None:
        machine = self.machine
        assert machine is not None and config.ssh_port is not None
        channel = SshChannel(
            "127.0.0.1",
            config.ssh_port,
            keys,
            machine.health,
            log=machine.consoles[uarts.log_stream(uarts.HOST_TTY)],
            on_timeout=lambda: self.capture_hang(None),
            transcript=self.run_dir.file("ssh.log"),
        )
        channel.connect(self.options.boot_timeout)
        self.ssh = channel
        self.run_dir.file("ssh-command.txt").write_text(channel.destination + "\n")

    @property
    def commands(self) -> Shell | SshChannel:
        """Where the host's commands run: SSH when the guest has it, else the console shell."""
        return self.ssh if self.ssh is not None else self.shell

    def run(self, command: str, timeout: float = 60.0) -> Result:
        return self.commands.run(command, timeout)

    def check(self, command: str, timeout: float = 60.0) -> str:
        return self.commands.check(command, timeout)

    def write_file(self, path: str, data: bytes) -> None:
        self.commands.write_file(path, data)

    def _announce_gdb(self, port: int) -> None:
        vmlinux = kernel.companions(self.images.kernel).vmlinux
        target = shlex.quote(str(vmlinux)) if vmlinux else "VMLINUX"
        note(f"gdb: gdb -ex 'target remote 127.0.0.1:{port}' {target}")
        if vmlinux is None:
            note(f"no vmlinux next to {self.images.kernel}: give gdb the one it was built with")

    def new_shell(self, tty: str) -> Shell:
        """A Shell on `tty` that knows its kernel's log stream and reports hangs."""
        machine = self.machine
        assert machine is not None, "guest is not booted"
        shell = Shell(
            machine.consoles[tty],
            machine.health,
            log=machine.consoles[uarts.log_stream(tty)],
            on_timeout=self.capture_hang,
        )
        self.shells.append(shell)
        return shell

    @property
    def instance_uarts(self) -> tuple[str, ...]:
        return uarts.SHELL_TTYS[1:]

    def console_shell(self, console: Console) -> Shell:
        """A Shell on an instance's mkcon, crash-checked and hang-reported with the machine's."""
        assert self.machine is not None, "guest is not booted"
        self.machine.consoles[console.name] = console
        shell = Shell(console, self.health, on_timeout=self.capture_hang)
        self.shells.append(shell)
        return shell

    def health(self) -> None:
        """The machine's crash checks, and GuestExited if QEMU has ended."""
        if self.machine is not None:
            self.machine.health()

    def capture_hang(self, stuck: Shell | None) -> None:
        """Save registers and every kernel's backtraces before a timeout is acted on.

        `stuck` is the shell that timed out; None for the SSH channel.
        """
        if self._capturing or self.machine is None or not self.machine.running():
            return
        self._capturing = True
        try:
            hang.capture(self.machine, self.images.kernel, self.shells, stuck)
        finally:
            self._capturing = False

    def finish(self) -> None:
        """Flush every kernel's log and check it once more: a late crash still fails the run."""
        running = self.machine is not None and self.machine.running()
        for shell in self.shells:
            if not running or shell.unusable or shell.console.closed:
                continue
            if not shell.crash_acknowledged:
                shell.flush()
                continue
            # A kernel whose crash a test expected may be dead: try briefly.
            with contextlib.suppress(GuestTimeout, ShellUnusable):
                shell.flush(timeout=5.0, recover=False)
        if self.machine is not None:
            self.machine.check_crashes()

    def close(self) -> int | None:
        """Tear the guest down (and release a run directory it made); QEMU's exit status."""
        if self.ssh is not None:
            self.ssh.close()
            self.ssh = None
        status = self.machine.shutdown() if self.machine is not None else None
        self.machine = None
        self._shell = None
        self.shells.clear()
        if self._owns_run:
            self.run_dir.close()
        return status
