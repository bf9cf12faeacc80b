"""The shells of a target's kernels: the host's and those of the kernels it spawns.

A shell is on a UART of QEMU's (ttyS0-ttyS3, each kernel's log on its own
port), or on a console relayed over the host's SSH connection (an
instance's mkcon).  Every shell is crash-checked with its target and reports
a hang to it; the relayed consoles are logged and crash-checked here, and so
are the logs the host keeps of instances that log to none of these
(harness/target/instance_logs.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from harness.core.errors import InfraError
from harness.core.rundir import RunDir
from harness.target import coverage, instance_logs, uarts
from harness.target.console import Console, check_crashes
from harness.target.protocol import CommandProtocol
from harness.target.shell import Shell
from harness.target.ssh import RelaySocket, SshConnection

HangReport = Callable[[Shell | None], None]


class InstanceConsoles:
    """Shells on a target's consoles, for the host and every spawned kernel."""

    def __init__(
        self,
        run_dir: RunDir,
        health: Callable[[], None],
        uart_consoles: Mapping[str, Console] | None = None,
        ssh: SshConnection | None = None,
        on_timeout: HangReport | None = None,
        gcov: bool = False,
    ) -> None:
        self.run_dir = run_dir
        # A coverage kernel's: each kernel's counts are saved before it goes away.
        self.gcov = gcov
        self.health = health
        self._uart_consoles = uart_consoles or {}
        self.ssh = ssh  # the host's connection, once there is one: it carries relayed consoles
        self._on_timeout = on_timeout
        self.shells: list[Shell] = []  # every shell in use, the host's first
        self.relayed: dict[str, Console] = {}  # consoles relayed over SSH, by name
        self._relays: dict[str, str] = {}  # the host command that relays each
        # Instances whose kernel logs to a console of these, crash-checked already.
        self.logged: set[str] = set()

    @property
    def uarts(self) -> tuple[str, ...]:
        """The UARTs a spawned kernel's shell can have (none on a lab machine)."""
        return tuple(tty for tty in uarts.SHELL_TTYS[1:] if tty in self._uart_consoles)

    def uart_shell(self, tty: str) -> Shell:
        """A Shell on UART `tty` that knows its kernel's log stream."""
        if tty not in self._uart_consoles:
            have = ", ".join(self.uarts) or "none here"
            raise InfraError(f"no UART {tty} for a shell (UARTs: {have})")
        log = self._uart_consoles.get(uarts.log_stream(tty))
        return self._add(Shell(self._uart_consoles[tty], self.health, log, self._on_timeout))

    def check_relay(self) -> None:
        """InfraError unless consoles can be relayed (the host must be reached over SSH)."""
        if self.ssh is None:
            raise InfraError(
                "an instance without a UART is reached through a second channel to the host, "
                "which needs SSH (--transport ssh)"
            )

    def relayed_shell(self, name: str, command: str) -> Shell:
        """A Shell on the console `command` relays over the host's SSH, logged as `name`.

        Open it before its kernel starts: what the kernel prints is not missed.
        """
        self.check_relay()
        assert self.ssh is not None
        self._relays[name] = command
        return self._add(Shell(self._relay(name), self.health, on_timeout=self._on_timeout))

    def _relay(self, name: str) -> Console:
        assert self.ssh is not None
        channel = self.ssh.open_stream(self._relays[name])
        console = Console(
            name,
            RelaySocket(channel, name),
            self.run_dir.console_log(name),
            ended="its relay over SSH ended",
        )
        console.watch()
        self.relayed[name] = console
        return console

    def reattach(self, ssh: SshConnection) -> None:
        """After a host live update: each relayed console again, over the new host's SSH.

        The old host's relay ended where it handed the console over; the
        new one reads on from there, into the same log.
        """
        self.ssh = ssh
        for name, old in list(self.relayed.items()):
            old.drain(1.0)
            old.close()
            new = self._relay(name)
            for shell in self.shells:
                if shell.console is old:
                    shell.console = new

    def save_coverage(self, shell: CommandProtocol, host: bool = False) -> None:
        """With a coverage kernel, the gcov counts of the kernel behind `shell` into the run."""
        if self.gcov:
            coverage.save(shell, self.run_dir, "host" if host else f"instance {shell.name}")

    def _add(self, shell: Shell) -> Shell:
        self.shells.append(shell)
        return shell

    def release(self, shell: Shell, why: str | None = None) -> None:
        """Stop using `shell`; with `why`, using it again raises ShellUnusable saying so."""
        if why is not None:
            shell.unusable = why
        if shell in self.shells:
            self.shells.remove(shell)

    def check_crashes(self) -> None:
        """KernelCrash if a relayed console showed one."""
        check_crashes(self.relayed.values(), self.run_dir)

    def check_instance_logs(self, commands: CommandProtocol) -> None:
        """KernelCrash if the log the host keeps of an instance not in `logged` shows one."""
        instance_logs.check(commands, self.run_dir, self.logged)

    def close(self) -> None:
        for console in self.relayed.values():
            console.drive()
            console.drain(1.0)
            console.close()
        self.relayed.clear()
        self.shells.clear()
