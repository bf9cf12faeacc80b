"""How a lab machine gets to the kernel under test and back: kexec, and a power cycle.

Booting: over SSH to whatever runs (the machine's own OS, or the kernel of
an earlier run), copy the kernel, the initramfs and the static `mkctl`, and
`mkctl kexec` into the kernel.  When nothing answers SSH, or the kernel
under test does not come up, a power cycle brings the machine back to its
own OS, so the next run finds it usable.
"""

from __future__ import annotations

import shlex
import threading
from collections.abc import Callable
from pathlib import Path

from harness.build import initramfs
from harness.build.images import Images
from harness.core.errors import GuestTimeout, InfraError
from harness.core.progress import note
from harness.core.rundir import RunDir
from harness.target.console import Console
from harness.target.labgrid import SERIAL, Lab
from harness.target.shell import READY
from harness.target.ssh import SshConnection

REACH_TIMEOUT = 30.0  # seconds for the running system to answer SSH before a power cycle
# The kernel of an earlier run may have instances, and a host refuses a kexec
# over them (EBUSY): stop, unload and remove each first, and name them.
CLEAR_INSTANCES = """
for dir in /sys/fs/multikernel/instances/*/; do
  [ -d "$dir" ] || continue
  id=$(cat "$dir/id")
  {mkctl} halt --id "$id" --force 2>/dev/null
  {mkctl} unload --id "$id" 2>/dev/null
  rmdir "$dir" && echo "${{dir%/}}"
done
true
"""


class KexecStrategy:
    """Walks one lab machine from what it runs to the kernel under test, or back to its own OS."""

    def __init__(self, lab: Lab, run: RunDir, alive: Callable[[], None]) -> None:
        self.lab = lab
        self.run = run
        self.alive = alive  # health while the machine's own OS runs: only the console's end
        self.recovered = False

    def _own_os(self, transcript: Path | None = None) -> SshConnection:
        return self.lab.ssh(self.lab.key, self.alive, transcript=transcript)

    def power_cycle(self, channel: SshConnection) -> None:
        """Power-cycle the machine and log in to its own OS on `channel`.

        GuestTimeout if its own OS does not answer; InfraError if the power
        switch itself fails.
        """
        try:
            self.lab.power.cycle()
        except Exception as exc:  # the lab's command, its network or labgrid: many ways
            raise InfraError(
                f"the lab's power switch failed: {exc}", self.run.console_log(SERIAL)
            ) from exc
        self.run.mark("power-cycled")
        channel.connect(self.lab.settings.recover_timeout)

    def reach(self) -> SshConnection:
        """SSH to whatever the machine runs now; a power cycle first if nothing answers."""
        channel = self._own_os(self.run.file("ssh.log"))
        try:
            channel.connect(REACH_TIMEOUT)
            return channel
        except GuestTimeout:
            note("the lab machine does not answer SSH: power-cycling it")
        try:
            self.power_cycle(channel)
        except GuestTimeout as exc:
            raise InfraError(
                f"the lab machine did not come back after a power cycle: {exc}",
                self.run.console_log(SERIAL),
            ) from exc
        return channel

    def recover(self, why: str) -> None:
        """Power-cycle the machine and wait for its own OS, so the next run finds it usable."""
        note(f"{why}: power-cycling the lab machine back to its own OS")
        channel = self._own_os()
        try:
            self.power_cycle(channel)
            self.recovered = True
        except GuestTimeout as exc:
            note(f"the lab machine did not come back after the power cycle: {exc}")
        except InfraError as exc:
            note(f"{exc}; the lab machine stays as it is")
        finally:
            channel.close()

    def kexec(self, images: Images, initrd: Path, cmdline: str, serial: Console) -> threading.Event:
        """Load the kernel under test on what runs now and reboot into it; the banner's event."""
        running = self.reach()
        try:
            stage = running.check("mktemp -d /tmp/mkh-boot.XXXXXX").strip()  # mode 0700
            running.put(images.kernel, f"{stage}/bzImage")
            running.put(initrd, f"{stage}/initrd", mode=0o600)
            running.put(initramfs.helper("mkctl"), f"{stage}/mkctl")
            cleared = running.check(CLEAR_INSTANCES.format(mkctl=f"{stage}/mkctl")).split()
            if cleared:
                note(f"removed the instances an earlier run left: {', '.join(cleared)}")
            # Loaded in the open, so a refusal (lockdown, no KEXEC_FILE) is reported as such.
            running.check(
                f"{stage}/mkctl load --id 0 --kernel {stage}/bzImage --initrd {stage}/initrd "
                f"--cmdline {shlex.quote(cmdline)}"
            )
            # From here on the console is the kernel under test's.
            if serial.take_crash() is not None:
                note("the machine's own OS logged a crash before the kexec; not counted")
            serial.forget_tail()
            banner = serial.expect_text(READY)
            # Detached: the SSH session dies with the system it runs on.
            reboot = shlex.quote(f"sleep 1; exec {stage}/mkctl kexec")
            running.check(f"setsid sh -c {reboot} </dev/null >/dev/null 2>&1 &")
        finally:
            running.close()
        self.run.mark("kexec")
        return banner
