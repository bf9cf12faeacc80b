"""The host's next kernel: a live update by kexec, or the kdump kernel of a panic.

In a live update the host kexecs into the next kernel (by default the one
it runs, with the same initramfs and command line) and the instances stay
up through it (INTERFACE.md §10).  A kdump kernel is the same kernel and
initramfs, loaded for a panic (the host needs `crashkernel=`), on one CPU
and without the host's pool.  Either way the target then finds the new
kernel's shell again, with every console still logged and crash-checked in
the same run directory.  The steps here are the guest's side; the targets
do the reconnecting.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from harness.build.initramfs import BOOT_KERNEL
from harness.core.errors import InfraError
from harness.target.protocol import CommandProtocol

# The host keeps its initramfs here when booted with retain_initrd (QEMU targets are).
RETAINED_INITRD = "/sys/firmware/initrd"
STAGE = "/tmp/mkh-kexec"
# What the guest prints when the kexec did not happen, with mkctl's exit status.
REFUSED = "mkh-kexec-refused"
REFUSED_LINE = re.compile(rf"{REFUSED}:(\d+)")
# kexec_file_load()'s KEXEC_FILE_ON_CRASH: the image is the kdump kernel.
KEXEC_FILE_ON_CRASH = 0x2
# What a kdump kernel gets on top of the host's command line: one CPU, so
# that it starts none of the instances' (INTERFACE.md §10).
CRASH_PARAMS = "nr_cpus=1 reset_devices"
# The host's own parameters a kdump kernel must not have.
HOST_ONLY = ("mkkernel_pool=", "crashkernel=")


@dataclass(frozen=True)
class Plan:
    """The next host kernel as the guest sees it."""

    kernel: str
    initrd: str
    cmdline: str

    def command(self) -> str:
        """The shell line that loads and boots it, and says so when it does not."""
        load = (
            f"mkctl kexec --kernel {shlex.quote(self.kernel)} --initrd {shlex.quote(self.initrd)}"
            f" --cmdline {shlex.quote(self.cmdline)}"
        )
        return f"{load}; echo {REFUSED}:$?"

    def crash_load(self) -> str:
        """The shell line that loads it as the kdump kernel (mkctl's own image, id 0)."""
        return (
            f"mkctl load --id 0 --flags {KEXEC_FILE_ON_CRASH:#x}"
            f" --kernel {shlex.quote(self.kernel)} --initrd {shlex.quote(self.initrd)}"
            f" --cmdline {shlex.quote(self.cmdline)}"
        )


def stage(
    commands: CommandProtocol, kernel: Path | None, initrd: Path | None, cmdline: str | None
) -> Plan:
    """Put the next kernel and initramfs in the guest (given ones are copied in).

    Without a kernel, the one the host booted (BOOT_KERNEL); without an
    initramfs, the one it booted with; without a command line, its own.
    """
    for given in (kernel, initrd):
        if given is not None and not given.is_file():
            raise InfraError(f"{given}: no such file to kexec into")
    commands.check(f"mkdir -p {STAGE}")
    guest_kernel = BOOT_KERNEL
    if kernel is not None:
        guest_kernel = f"{STAGE}/bzImage"
        commands.write_file(guest_kernel, kernel.read_bytes())
    guest_initrd = f"{STAGE}/initrd"
    if initrd is not None:
        commands.write_file(guest_initrd, initrd.read_bytes())
    else:
        kept = commands.run(f"cat {RETAINED_INITRD} > {guest_initrd}")
        if kept.status != 0:
            raise InfraError(
                f"the host kept no initramfs to boot again ({RETAINED_INITRD}: "
                f"{kept.output.strip()}); was it booted with retain_initrd?"
            )
    if cmdline is None:
        cmdline = commands.check("cat /proc/cmdline").strip()
    return Plan(guest_kernel, guest_initrd, cmdline)


def refused(status: str, output: str) -> InfraError:
    """The error of a kexec the host did not do, with what mkctl said."""
    said = " ".join(line.strip() for line in output.splitlines() if "mkctl" in line)
    return InfraError(
        f"the host did not kexec (mkctl exit status {status}): {said or output.strip()[-300:]}"
    )


def crash_cmdline(host: str, params: str = CRASH_PARAMS) -> str:
    """A kdump kernel's command line: the host's without its pool and crashkernel=, and `params`."""
    kept = [word for word in host.split() if not word.startswith(HOST_ONLY)]
    return " ".join([*kept, *params.split()])


def load_crash(commands: CommandProtocol, params: str = CRASH_PARAMS) -> Plan:
    """Load the host's kernel and initramfs as its kdump kernel, with `params` added."""
    host = commands.check("cat /proc/cmdline").strip()
    if not any(word.startswith("crashkernel=") for word in host.split()):
        raise InfraError(
            "the host reserved no memory for a kdump kernel: boot it with crashkernel=SIZE"
        )
    plan = stage(commands, None, None, crash_cmdline(host, params))
    commands.check(plan.crash_load())
    return plan
