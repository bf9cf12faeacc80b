"""A lab machine through labgrid: boot the kernel under test on it and drive it over SSH.

The machine is target `main` of a labgrid environment (YAML), usually a
RemotePlace the user has acquired from the lab's coordinator.  From labgrid
the harness takes:

- `NetworkSerialPort` (`protocol: raw`, as ser2net serves it): the machine's
  serial console.  The harness reads it itself, so it is logged and
  crash-checked like a QEMU console (`console-serial.log`).
- `NetworkService`: the machine's SSH (address, port, username).
- a power driver (`ExternalPowerDriver`, `PDUDaemonDriver`, ...): `cycle()`
  brings the machine back to its own OS when a kernel under test does not
  come up.
- `SSHDriver`'s `keyfile`: the key the machine's own OS authorizes.

Target options (`targets: main: options:`): `mkh_cmdline`, the kernel under
test's command line on this machine (its console, `mkkernel_pool=`,
`mkh.ip=`), and optionally `mkh_boot_timeout` and `mkh_recover_timeout` in
seconds.

Booting: over SSH to whatever runs (the machine's own OS, or the kernel of
an earlier run), copy the kernel, the initramfs with this run's SSH layer
and the static `mkctl`, and `mkctl kexec` into the kernel.  The harness
waits for the mkh init's banner on the console and logs in with this run's
keys (the host key pinned).  A kernel that crashes or does not come up in
time is reported, after a power cycle has brought the machine back.
"""

from __future__ import annotations

import shlex
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from harness.build import initramfs
from harness.build.images import Images
from harness.core.errors import GuestExited, GuestTimeout, HarnessError, InfraError, KernelCrash
from harness.core.progress import note
from harness.core.rundir import RunDir
from harness.target import sshd, uarts
from harness.target.console import Console, report_crash
from harness.target.protocol import Lifecycle, Target
from harness.target.qemu import Guest, GuestOptions
from harness.target.shell import READY, Result, Shell
from harness.target.ssh import SshChannel

TARGET = "main"
SERIAL = "serial"  # the console stream's name: console-serial.log
REACH_TIMEOUT = 30.0  # seconds for the running system to answer SSH before a power cycle
CONNECT_TIMEOUT = 10.0


class QemuOnly(HarnessError):
    """A test asked a lab machine for something only a QEMU guest has (QMP, extra UARTs)."""

    def __init__(self, feature: str) -> None:
        super().__init__(f"needs {feature}, which only a QEMU guest has")
        self.feature = feature


@dataclass(frozen=True)
class LabSettings:
    cmdline: str
    boot_timeout: float = 300.0
    recover_timeout: float = 600.0


class Lab:
    """The labgrid side of one machine: console server, SSH service, power, key, settings."""

    def __init__(self, env_file: Path) -> None:
        from labgrid import Environment  # imported here: `mkh` without a lab never pays for it
        from labgrid.driver import SSHDriver
        from labgrid.protocol import PowerProtocol
        from labgrid.resource import NetworkSerialPort, NetworkService

        if not env_file.is_file():
            raise InfraError(f"labgrid environment {env_file} does not exist")
        self.env_file = env_file
        try:
            self.env = Environment(str(env_file))
            target = self.env.get_target(TARGET)
            if target is None:
                raise InfraError(f"{env_file} has no target {TARGET!r}")
            self.serial: Any = target.get_resource(NetworkSerialPort)
            self.service: Any = target.get_resource(NetworkService)
            self.power: Any = target.get_driver(PowerProtocol)
            keyfile = target.get_driver(SSHDriver, activate=False).keyfile
            config = self.env.config
            options = {
                name: config.get_target_option(TARGET, name, default)
                for name, default in (
                    ("mkh_cmdline", ""),
                    ("mkh_boot_timeout", LabSettings.boot_timeout),
                    ("mkh_recover_timeout", LabSettings.recover_timeout),
                )
            }
        except InfraError:
            raise
        except Exception as exc:  # labgrid reports a bad environment many ways
            raise InfraError(f"labgrid environment {env_file}: {exc}") from exc
        if not keyfile:
            raise InfraError(f"{env_file}: SSHDriver needs the keyfile the machine authorizes")
        if getattr(self.serial, "protocol", "raw") != "raw":
            raise InfraError(f"{env_file}: the NetworkSerialPort must be `protocol: raw`")
        if not options["mkh_cmdline"]:
            raise InfraError(
                f"{env_file}: target option mkh_cmdline (the kernel's console) is missing"
            )
        self.key = sshd.load_key(Path(config.resolve_path(keyfile)))
        self.settings = LabSettings(
            str(options["mkh_cmdline"]),
            float(options["mkh_boot_timeout"]),
            float(options["mkh_recover_timeout"]),
        )

    def console(self, run: RunDir) -> Console:
        from labgrid.util.proxy import proxymanager  # through the lab's SSH proxy if it has one

        try:
            address = proxymanager.get_host_and_port(self.serial)
            sock = socket.create_connection(address, CONNECT_TIMEOUT)
        except Exception as exc:  # OSError, or labgrid's ExecutionError from the proxy
            where = f"{self.serial.host}:{self.serial.port}"
            raise InfraError(f"the console server {where} does not answer: {exc}") from exc
        sock.settimeout(None)
        return Console(SERIAL, sock, run.console_log(SERIAL))

    def ssh(
        self,
        keys: sshd.Keys,
        health: Any,
        log: Console | None = None,
        transcript: Path | None = None,
        username: str | None = None,
    ) -> SshChannel:
        """SSH to the machine: as the lab's user (its own OS), or as `username`."""
        return SshChannel(
            self.service.address,
            int(self.service.port),
            keys,
            health,
            log=log,
            username=username or self.service.username or "root",
            transcript=transcript,
        )

    def close(self) -> None:
        self.env.cleanup()


class LabGuest(Lifecycle):
    """The kernel under test booted on a lab machine; the same command API as a Guest."""

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
        self.owns_lab = owns_lab  # close the labgrid environment with the guest
        # Seconds for the kernel under test to answer: the lab's setting unless given.
        self.boot_timeout = boot_timeout or lab.settings.boot_timeout
        self.run_dir = run
        self.append = append
        self.put = put or []
        self.shells: list[Shell] = []
        self.ssh: SshChannel | None = None
        self.serial: Console | None = None
        # Instances' consoles over shared memory (harness/multikernel/mkcon.py), by name.
        self.consoles: dict[str, Console] = {}
        self.recovered = False

    # -- boot -------------------------------------------------------------

    def boot(self) -> Self:
        if self.serial is not None:
            raise QemuOnly("a second machine (a lab run boots one kernel at a time)")
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
        cmdline = f"{self.lab.settings.cmdline} ignore_loglevel {self.append} {sshd.KERNEL_PARAM}"
        cmdline = " ".join(cmdline.split())
        self.run_dir.file("cmdline.txt").write_text(cmdline + "\n")
        banner = self._kexec(initrd, cmdline)
        try:
            self.serial.wait_event(banner, self.boot_timeout, "the kernel under test", self.health)
            self.ssh = self.lab.ssh(
                keys, self.health, self.serial, self.run_dir.file("ssh.log"), username="root"
            )
            self.ssh.connect(self.boot_timeout)
            self.run_dir.file("ssh-command.txt").write_text(self.ssh.destination + "\n")
        except (GuestTimeout, KernelCrash, GuestExited) as exc:
            self._recover(f"the kernel under test did not come up ({exc})")
            raise
        self.run_dir.mark("shell-ready")
        return self

    def _console_alive(self) -> None:
        """Health while the machine's own OS runs: its crashes are not the kernel under test's."""
        if self.serial is not None and self.serial.closed:
            raise GuestExited(SERIAL, self.serial.tail())

    def _kexec(self, initrd: Path, cmdline: str) -> threading.Event:
        """Load the kernel under test on what runs now and reboot into it; the banner's event."""
        serial = self.serial
        assert serial is not None
        running = self._reach()
        try:
            stage = running.check("mktemp -d /tmp/mkh-boot.XXXXXX").strip()  # mode 0700
            running.put(self.images.kernel, f"{stage}/bzImage")
            running.put(initrd, f"{stage}/initrd", mode=0o600)
            running.put(initramfs.helper("mkctl"), f"{stage}/mkctl")
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
        self.run_dir.mark("kexec")
        return banner

    def _reach(self) -> SshChannel:
        """SSH to whatever the machine runs now; a power cycle first if nothing answers."""
        channel = self.lab.ssh(
            self.lab.key, self._console_alive, transcript=self.run_dir.file("ssh.log")
        )
        try:
            channel.connect(REACH_TIMEOUT)
            return channel
        except GuestTimeout:
            note("the lab machine does not answer SSH: power-cycling it")
        self.lab.power.cycle()
        self.run_dir.mark("power-cycled")
        try:
            channel.connect(self.lab.settings.recover_timeout)
        except GuestTimeout as exc:
            raise InfraError(
                f"the lab machine did not come back after a power cycle: {exc}",
                self.run_dir.console_log(SERIAL),
            ) from exc
        return channel

    def _recover(self, why: str) -> None:
        """Power-cycle the machine and wait for its own OS, so the next run finds it usable."""
        note(f"{why}: power-cycling the lab machine back to its own OS")
        self.lab.power.cycle()
        self.run_dir.mark("power-cycled")
        channel = self.lab.ssh(self.lab.key, self._console_alive)
        try:
            channel.connect(self.lab.settings.recover_timeout)
            self.recovered = True
        except GuestTimeout as exc:
            note(f"the lab machine did not come back after the power cycle: {exc}")
        finally:
            channel.close()

    # -- state ------------------------------------------------------------

    def health(self) -> None:
        """KernelCrash if the console showed one; GuestExited if the console server hung up."""
        for console in self.consoles.values():
            where = uarts.describe(console.name)
            report_crash(console, self.run_dir.file(f"crash-{console.name}.txt"), where)
        serial = self.serial
        if serial is None:
            return
        report_crash(serial, self.run_dir.file(f"crash-{SERIAL}.txt"), "the lab console")
        if serial.closed:
            raise GuestExited(SERIAL, serial.tail())

    @property
    def commands(self) -> SshChannel:
        if self.ssh is None:
            raise InfraError("the lab machine is not booted")
        return self.ssh

    @property
    def machine(self) -> None:
        raise QemuOnly("QEMU's machine (QMP, the UARTs for instances' shells)")

    @property
    def shell(self) -> Shell:
        raise QemuOnly("the host's console shell (commands go over SSH on a lab machine)")

    def new_shell(self, tty: str) -> Shell:
        raise QemuOnly(f"a UART for an instance's shell ({tty})")

    @property
    def instance_uarts(self) -> tuple[str, ...]:
        return ()

    def console_shell(self, console: Console) -> Shell:
        self.consoles[console.name] = console
        shell = Shell(console, self.health)
        self.shells.append(shell)
        return shell

    def run(self, command: str, timeout: float = 60.0) -> Result:
        return self.commands.run(command, timeout)

    def check(self, command: str, timeout: float = 60.0) -> str:
        return self.commands.check(command, timeout)

    def write_file(self, path: str, data: bytes) -> None:
        self.commands.write_file(path, data)

    # -- stop -------------------------------------------------------------

    def finish(self) -> None:
        """A last look at the console: a late crash still fails the run."""
        if self.ssh is not None:
            self.ssh.run(":", timeout=30)
        self.health()

    def close(self) -> None:
        for console in self.consoles.values():
            console.close()
        self.consoles.clear()
        if self.ssh is not None:
            self.ssh.close()
            self.ssh = None
        if self.serial is not None:
            self.serial.close()
            self.serial = None
        if self.owns_lab:
            self.lab.close()
            self.owns_lab = False


def make_guest(images: Images, options: GuestOptions, run: RunDir) -> Target:
    """The guest `options` ask for: on the lab machine of `lab_env`, else in QEMU."""
    if options.lab_env is None:
        return Guest(images, options, run)
    if options.transport != "ssh" or options.gdb_port is not None:
        raise InfraError("a lab machine is driven over SSH, without gdb: --transport ssh, no --gdb")
    lab = Lab(options.lab_env)
    return LabGuest(images, lab, run, options.append, list(options.put), True, options.boot_timeout)
