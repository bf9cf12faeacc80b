"""A target: one booted machine, whichever way it is reached, with its drivers as attributes.

`QemuTarget` (harness/target/qemu.py) and `LabTarget` (harness/target/lab.py)
are targets.  Code that needs commands takes a CommandProtocol (a target is
one: it hands each command to its SSH connection or its console shell);
what spawned kernels' shells need is `instances`; what only QEMU has is
`debug`, None on a lab machine.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Self

from harness.build.images import Images
from harness.core.rundir import RunDir
from harness.target.instances import InstanceConsoles
from harness.target.protocol import DEFAULT_TIMEOUT, CommandProtocol, Completed, QemuDebug
from harness.target.shell import Shell
from harness.target.ssh import SshConnection


class Target(CommandProtocol):
    """A booted machine.  Use as a context manager: boot on entry, finish and close on exit.

    `finish` runs only after a block that raised nothing: its last crash
    check must not hide the block's own error.
    """

    images: Images
    run_dir: RunDir
    instances: InstanceConsoles
    ssh: SshConnection | None

    @property
    @abc.abstractmethod
    def commands(self) -> CommandProtocol:
        """Where the host's commands run."""

    @property
    @abc.abstractmethod
    def debug(self) -> QemuDebug | None:
        """QMP, the monitor, SysRq keys and gdb: QEMU's; None on a lab machine."""

    @property
    def host_shell(self) -> Shell | None:
        """The host's shell on its console (QEMU's ttyS0); None on a lab machine."""
        return None

    @property
    def name(self) -> str:
        return self.commands.name

    def run(self, command: str, timeout: float = DEFAULT_TIMEOUT) -> Completed:
        return self.commands.run(command, timeout)

    def write_file(self, path: str, data: bytes) -> None:
        self.commands.write_file(path, data)

    @abc.abstractmethod
    def boot(self) -> Self: ...

    @abc.abstractmethod
    def kexec(
        self, kernel: Path | None = None, initrd: Path | None = None, append: str | None = None
    ) -> None:
        """Replace the host kernel by kexec, the instances running on; back once it answers.

        Without arguments: the same kernel, initramfs and command line
        (`append` replaces what the target was booted with after the
        harness's own parameters).  A host that does not come back raises,
        quoting its console.
        """

    @abc.abstractmethod
    def health(self) -> None:
        """Raise the crash (or the machine's end) seen so far."""

    @abc.abstractmethod
    def finish(self) -> None:
        """A last look at every log: a late crash still fails the run."""

    @abc.abstractmethod
    def close(self) -> None: ...

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
