"""The target API: what a test needs from a machine, however the machine is reached.

`Guest` (a QEMU machine, commands over its console or SSH) and `LabGuest`
(a lab machine through labgrid, commands over SSH) are both targets;
`Multikernel`, `mkh run` and the suite's `boot` fixture use only this.
What only QEMU has (`machine`: QMP, the UARTs of instances' shells) raises
`lab.QemuOnly` on a lab machine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, Self

if TYPE_CHECKING:
    from harness.build.images import Images
    from harness.core.rundir import RunDir
    from harness.target.console import Console
    from harness.target.machine import Machine
    from harness.target.shell import Result, Shell
    from harness.target.ssh import SshChannel


class Commands(Protocol):
    """A command channel: run a shell command line, check one, write a file."""

    def run(self, command: str, timeout: float = 60.0) -> Result: ...

    def check(self, command: str, timeout: float = 60.0) -> str: ...

    def write_file(self, path: str, data: bytes) -> None: ...


class Target(Commands, Protocol):
    """A booted machine: its commands, its logs and crash state, its spawned kernels' shells."""

    images: Images
    run_dir: RunDir
    shells: list[Shell]

    @property
    def machine(self) -> Machine | None: ...

    @property
    def shell(self) -> Shell:
        """The host's console shell (QEMU only)."""

    @property
    def ssh(self) -> SshChannel | None: ...

    def boot(self) -> Target: ...

    def health(self) -> None:
        """Raise the crash (or the machine's end) seen so far."""

    @property
    def instance_uarts(self) -> tuple[str, ...]:
        """The UARTs spawned kernels' shells can have (QEMU's ttyS1-ttyS3; none on a lab)."""

    def new_shell(self, tty: str) -> Shell: ...

    def console_shell(self, console: Console) -> Shell:
        """A Shell on `console` (an instance's mkcon), crash-checked with the target's own."""

    def finish(self) -> None:
        """A last look at every log: a late crash still fails the run."""

    def close(self) -> object: ...

    def __enter__(self) -> Target: ...

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None: ...


class Lifecycle:
    """`with` for a target: boot on entry (closed again if that fails), finish and close on exit.

    `finish` runs only after a block that raised nothing: its last crash
    check must not hide the block's own error.
    """

    def boot(self) -> Self:
        raise NotImplementedError

    def finish(self) -> None:
        raise NotImplementedError

    def close(self) -> object:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            return self.boot()
        except BaseException:
            self.close()
            raise

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        try:
            if exc_type is None:
                self.finish()
        finally:
            self.close()
