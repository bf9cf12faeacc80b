"""The kernel under test booted on a lab machine (through labgrid) and driven over SSH.

The harness waits for the mkh init's banner on the machine's console and
logs in with this run's keys (the host key pinned).  A kernel that crashes
or does not come up in time is reported, after a power cycle has brought the
machine back (harness/target/recovery.py).
"""

from __future__ import annotations

import shlex
import threading
import time
from pathlib import Path
from typing import Self

from harness.build import initramfs
from harness.build.images import Images
from harness.core.errors import GuestExited, GuestTimeout, InfraError, KernelCrash
from harness.core.rundir import RunDir
from harness.target import live_update, sshd
from harness.target.base import Target
from harness.target.console import Console, report_crash
from harness.target.instances import InstanceConsoles
from harness.target.labgrid import SERIAL, Lab
from harness.target.protocol import CommandProtocol
from harness.target.recovery import KexecStrategy
from harness.target.shell import READY
from harness.target.ssh import SshConnection


class LabTarget(Target):
    """The kernel under test on a lab machine; the same command API as a QEMU target."""

    def __init__(
        self,
        images: Images,
        lab: Lab,
        run: RunDir,
        append: str = "",
        put: list[tuple[Path, str]] | None = None,
        owns_lab: bool = False,
        boot_timeout: float | None = None,
    ) -> None:
        self.images = images
        self.lab = lab
        self.owns_lab = owns_lab  # close the labgrid environment with the target
        # Seconds for the kernel under test to answer: the lab's setting unless given.
        self.boot_timeout = boot_timeout or lab.settings.boot_timeout
        self.run_dir = run
        self.append = append
        self.put = put or []
        self.ssh: SshConnection | None = None
        self.serial: Console | None = None
        # Instances' consoles, relayed over the SSH connection (no UARTs here).
        self.instances = InstanceConsoles(run, self.health)
        self.strategy = KexecStrategy(lab, run, self._console_alive)
        self._keys: sshd.Keys | None = None

    @property
    def debug(self) -> None:
        return None  # no QMP, no gdbstub

    @property
    def recovered(self) -> bool:
        return self.strategy.recovered

    def boot(self) -> Self:
        if self.serial is not None:
            raise InfraError("a lab target boots one kernel at a time")
        if self.images.config is not None:
            self.run_dir.keep_config(self.images.config)
        # The lab's key is let in too: the next run reaches this kernel and
        # kexecs from here, without a power cycle.
        keys = sshd.make_keys(self.run_dir.file("ssh"), authorize=[self.lab.key.client])
        initrd = initramfs.with_files(
            self.images.initrd, self.put + sshd.layer(keys), self.run_dir.file("initrd.img")
        )
        self.serial = self.lab.console(self.run_dir)
        self.serial.watch()
        # ignore_loglevel: the end-of-command markers the harness writes to
        # /dev/kmsg must reach the console whatever the lab's log level.
        cmdline = self._cmdline(self.append)
        self.run_dir.file("cmdline.txt").write_text(cmdline + "\n")
        banner = self.strategy.kexec(self.images, initrd, cmdline, self.serial)
        self._keys = keys
        self._come_up(banner, "the kernel under test")
        self.run_dir.mark("shell-ready")
        return self

    def _cmdline(self, append: str) -> str:
        cmdline = f"{self.lab.settings.cmdline} ignore_loglevel {append} {sshd.KERNEL_PARAM}"
        return " ".join(cmdline.split())

    def _come_up(self, banner: threading.Event, what: str) -> None:
        """Wait for the banner and log in; a kernel that does not come up is recovered from."""
        assert self.serial is not None and self._keys is not None
        try:
            self.serial.wait_event(banner, self.boot_timeout, what, self.health)
            self.ssh = self.lab.ssh(
                self._keys, self.health, self.serial, self.run_dir.file("ssh.log"), username="root"
            )
            self.ssh.connect(self.boot_timeout)
            self.instances.ssh = self.ssh
            self.run_dir.file("ssh-command.txt").write_text(self.ssh.destination + "\n")
        except (GuestTimeout, KernelCrash, GuestExited) as exc:
            self.strategy.recover(f"{what} did not come up ({exc})")
            raise

    def kexec(
        self, kernel: Path | None = None, initrd: Path | None = None, append: str | None = None
    ) -> None:
        ssh, serial = self.ssh, self.serial
        if ssh is None or serial is None:
            raise InfraError("the lab machine is not booted")
        stage = ssh.check("mktemp -d /tmp/mkh-kexec.XXXXXX").strip()  # mode 0700
        ssh.put(kernel or self.images.kernel, f"{stage}/bzImage")
        ssh.put(initrd or self.run_dir.file("initrd.img"), f"{stage}/initrd", mode=0o600)
        booted = self.run_dir.file("cmdline.txt").read_text().strip()
        cmdline = booted if append is None else self._cmdline(append)
        plan = live_update.Plan(f"{stage}/bzImage", f"{stage}/initrd", cmdline)
        serial.forget_tail()
        banner = serial.expect_text(READY)
        refused = serial.expect_text(live_update.REFUSED)
        # Detached, its words in the kernel log on the console: the SSH
        # session ends with the kernel it runs on.
        line = shlex.quote(f"sleep 1; {plan.command()}")
        ssh.check(f"setsid sh -c {line} </dev/null >/dev/kmsg 2>&1 &")
        self.run_dir.mark("kexec-staged")
        ssh.close()
        self.ssh = None
        deadline = time.monotonic() + self.boot_timeout
        while not banner.is_set() and time.monotonic() < deadline:
            if refused.wait(0.5):
                raise InfraError(
                    "the host did not kexec; its reason is on the console",
                    self.run_dir.console_log(SERIAL),
                )
            self.health()
        self._come_up(banner, "the new host kernel")
        self.run_dir.mark("kexec")

    def _console_alive(self) -> None:
        """Health while the machine's own OS runs: its crashes are not the kernel under test's."""
        if self.serial is not None and self.serial.closed:
            raise GuestExited(SERIAL, self.serial.tail(), ended=self.serial.ended)

    def health(self) -> None:
        """KernelCrash if a console showed one; GuestExited if the console server hung up."""
        self.instances.check_crashes()
        serial = self.serial
        if serial is None:
            return
        report_crash(serial, self.run_dir.file(f"crash-{SERIAL}.txt"), "the lab console")
        if serial.closed:
            raise GuestExited(SERIAL, serial.tail(), ended=serial.ended)

    @property
    def commands(self) -> CommandProtocol:
        if self.ssh is None:
            raise InfraError("the lab machine is not booted")
        return self.ssh

    def finish(self) -> None:
        """A last look at the console and the instances' logs: a late crash still fails the run."""
        if self.ssh is not None:
            self.ssh.run(":", timeout=30)
        self.health()
        if self.ssh is not None:
            self.instances.check_instance_logs(self.ssh)

    def close(self) -> None:
        self.instances.close()
        if self.ssh is not None:
            self.ssh.close()
            self.ssh = None
        if self.serial is not None:
            self.serial.close()
            self.serial = None
        if self.owns_lab:
            self.lab.close()
            self.owns_lab = False
