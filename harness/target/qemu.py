"""A QEMU guest with a shell on its console (and SSH if asked): boot, run commands, tear down."""

from __future__ import annotations

import contextlib
import dataclasses
import shlex
from pathlib import Path
from typing import Self

from harness.build import gcov, initramfs, kernel
from harness.build.images import Images
from harness.core.errors import GuestTimeout, InfraError, KernelCrash
from harness.core.progress import note
from harness.core.rundir import RunDir
from harness.target import hang, live_update, sshd, uarts
from harness.target.base import Target
from harness.target.crash import Crash
from harness.target.instances import InstanceConsoles
from harness.target.machine import Machine, MachineConfig, free_port
from harness.target.options import TRANSPORTS, TargetOptions
from harness.target.protocol import CommandProtocol
from harness.target.shell import READY, Shell, ShellUnusable
from harness.target.ssh import SshConnection

# QEMU gets a port that was free a moment before; another process may take it first.
PORT_ATTEMPTS = 3


class QemuTarget(Target):
    """A QEMU machine whose ttyS0 shell the harness drives.  Use as a context manager."""

    def __init__(
        self, images: Images, options: TargetOptions | None = None, run: RunDir | None = None
    ) -> None:
        self.images = images
        self.options = options or TargetOptions()
        self._owns_run = run is None  # a RunDir given by the caller is the caller's to close
        self.run_dir = run or RunDir()
        self._machine: Machine | None = None
        self._shell: Shell | None = None
        self.instances = InstanceConsoles(self.run_dir, self.health)
        self.ssh: SshConnection | None = None
        self._capturing = False
        self._config: MachineConfig | None = None
        self._keys: sshd.Keys | None = None

    @property
    def machine(self) -> Machine:
        """The QEMU machine; InfraError before it is launched and after the close."""
        if self._machine is None:
            raise InfraError("the guest's QEMU is not running (not booted, or closed)")
        return self._machine

    @property
    def debug(self) -> Machine | None:
        return self._machine

    @property
    def shell(self) -> Shell:
        """The host's shell on ttyS0."""
        assert self._shell is not None, "guest is not booted"
        return self._shell

    @property
    def host_shell(self) -> Shell | None:
        return self._shell

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
            threads=opts.threads,
            memory=opts.memory,
            accel=opts.accel,
            gdb_port=opts.gdb_port,
        )
        self._config, self._keys = config, keys
        self._launch(config, with_ssh=keys is not None)
        if opts.gdb_port is not None:
            self._announce_gdb(opts.gdb_port)
        assert self._machine is not None
        self.instances = InstanceConsoles(
            self.run_dir,
            self.health,
            self._machine.consoles,
            on_timeout=self.capture_hang,
            gcov=gcov.profiled(self.images.config),
        )
        self._shell = self.instances.uart_shell(uarts.HOST_TTY)
        self._shell.wait_ready(opts.boot_timeout)
        if keys is not None:
            self._connect_ssh(keys, config)
            self.instances.ssh = self.ssh
        self.run_dir.mark("shell-ready")
        return self

    def kexec(
        self, kernel: Path | None = None, initrd: Path | None = None, append: str | None = None
    ) -> None:
        config = self._config
        assert config is not None, "guest is not booted"
        cmdline = None
        if append is not None:
            extra = f" {sshd.KERNEL_PARAM}" if self._keys is not None else ""
            cmdline = dataclasses.replace(config, append=append + extra).cmdline()
        # The old host's counts, up to here: what it runs from the kexec on is not counted.
        self.instances.save_coverage(self.commands, host=True)
        plan = live_update.stage(self.commands, kernel, initrd, cmdline)
        # The old host's last answer: its downtime runs from here to "kexec".
        self.run_dir.mark("kexec-staged")
        shell = self.shell
        console = shell.console
        with console.driven():
            # The banner of the new host's init, not the old one's.
            console.forget_tail()
            console.send(plan.command() + "\n")
            what = "the new host kernel's shell after the kexec"
            index = console.expect(
                [READY, live_update.REFUSED_LINE], self.options.boot_timeout, what, self.health
            )
            if index == 1:
                match = console.child.match
                before = console.child.before
                raise live_update.refused(match.group(1), str(before))
        shell.wait_ready(self.options.boot_timeout)
        self._reconnect(config)
        self.run_dir.mark("kexec")

    def load_crash_kernel(self, params: str = live_update.CRASH_PARAMS) -> None:
        """Load the host's own kernel as its kdump kernel (boot the host with crashkernel=)."""
        live_update.load_crash(self.commands, params)

    def crash_into_kdump(self, command: str = "echo c > /proc/sysrq-trigger") -> Crash | None:
        """Crash the host with `command`, a kdump kernel loaded; back once its shell answers.

        Returns the host's crash, taken (an expected one).  The kdump
        kernel's shell is the host's from then on, in the same run directory.
        """
        config = self._config
        assert config is not None, "guest is not booted"
        self.instances.save_coverage(self.commands, host=True)
        shell = self.shell
        # Registered first: the drain may read the banner before anyone waits for it.
        ready = shell.console.expect_text(READY)
        try:
            self.run(command, timeout=60)
        except KernelCrash:
            pass
        else:
            shell.console.forget_text(READY)
            raise InfraError(f"{command!r} did not crash the host")
        crash = shell.take_crash()
        what = "the kdump kernel's shell after the host's panic"
        shell.console.wait_event(ready, self.options.boot_timeout, what, self.health)
        shell.wait_ready(self.options.boot_timeout)
        self._reconnect(config)
        self.run_dir.mark("crash-kernel")
        return crash

    def _reconnect(self, config: MachineConfig) -> None:
        """SSH to the host's next kernel: the old one's connection died with it (relays too)."""
        if self.ssh is None or self._keys is None:
            return
        self.ssh.close()
        self._connect_ssh(self._keys, config)
        assert self.ssh is not None
        self.instances.reattach(self.ssh)

    def _launch(self, config: MachineConfig, with_ssh: bool) -> None:
        for attempt in range(PORT_ATTEMPTS):
            if with_ssh:
                config.ssh_port = free_port()
            self._machine = Machine(config, self.run_dir)
            try:
                self._machine.launch()
                return
            except InfraError as exc:
                taken = with_ssh and "host forwarding" in str(exc)
                if not taken or attempt == PORT_ATTEMPTS - 1:
                    raise

    def _connect_ssh(self, keys: sshd.Keys, config: MachineConfig) -> None:
        machine = self._machine
        assert machine is not None and config.ssh_port is not None
        channel = SshConnection(
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
    def commands(self) -> CommandProtocol:
        """Where the host's commands run: SSH when the guest has it, else the console shell."""
        return self.ssh if self.ssh is not None else self.shell

    def _announce_gdb(self, port: int) -> None:
        vmlinux = kernel.companions(self.images.kernel).vmlinux
        target = shlex.quote(str(vmlinux)) if vmlinux else "VMLINUX"
        note(f"gdb: gdb -ex 'target remote 127.0.0.1:{port}' {target}")
        if vmlinux is None:
            note(f"no vmlinux next to {self.images.kernel}: give gdb the one it was built with")

    def health(self) -> None:
        """The machine's crash checks, and GuestExited if QEMU has ended."""
        self.instances.check_crashes()
        if self._machine is not None:
            self._machine.health()

    def capture_hang(self, stuck: Shell | None) -> None:
        """Save registers and every kernel's backtraces before a timeout is acted on.

        `stuck` is the shell that timed out; None for the SSH channel.
        """
        if self._capturing or self._machine is None or not self._machine.running():
            return
        self._capturing = True
        try:
            shells = self.instances.shells
            hang.capture(self._machine, self.images.kernel, shells, stuck, self.instances.relayed)
        finally:
            self._capturing = False

    def finish(self) -> None:
        """Flush every kernel's log and check it once more: a late crash still fails the run.

        The logs the host keeps of instances are checked too (instance_logs.py),
        and a coverage kernel's counts are saved from each kernel that answers.
        """
        running = self._machine is not None and self._machine.running()
        alive: list[Shell] = []
        for shell in list(self.instances.shells):
            if not running or shell.unusable or shell.console.closed:
                continue
            if not shell.crash_acknowledged:
                shell.flush()
                alive.append(shell)
                continue
            # A kernel whose crash a test expected may be dead: try briefly.
            with contextlib.suppress(GuestTimeout, ShellUnusable):
                shell.flush(timeout=5.0, recover=False)
        if self._machine is not None:
            self._machine.check_crashes()
        self.instances.check_crashes()
        # A host whose crash a test expected cannot be asked for their logs.
        host = self._shell
        if running and not (host is not None and (host.crash_acknowledged or host.unusable)):
            self.instances.check_instance_logs(self.commands)
        for shell in alive:
            # The host's over SSH when it has it: faster than its console.
            if shell is host:
                self.instances.save_coverage(self.commands, host=True)
            else:
                self.instances.save_coverage(shell)

    def close(self) -> None:
        """Tear the guest down (and release a run directory it made)."""
        if self.ssh is not None:
            self.ssh.close()
            self.ssh = None
        if self._machine is not None:
            self._machine.shutdown()
        self._machine = None
        self._shell = None
        self.instances.close()
        if self._owns_run:
            self.run_dir.close()
