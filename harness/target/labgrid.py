"""The labgrid side of a lab machine: its console server, SSH service, power, key, settings.

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
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core.errors import InfraError
from harness.core.rundir import RunDir
from harness.target import sshd
from harness.target.console import Console
from harness.target.ssh import SshConnection

TARGET = "main"
SERIAL = "serial"  # the console stream's name: console-serial.log
CONNECT_TIMEOUT = 10.0


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

        where = f"the console server {self.serial.host}:{self.serial.port}"
        try:
            address = proxymanager.get_host_and_port(self.serial)
            sock = socket.create_connection(address, CONNECT_TIMEOUT)
        except Exception as exc:  # OSError, or labgrid's ExecutionError from the proxy
            raise InfraError(f"{where} does not answer: {exc}") from exc
        sock.settimeout(None)
        return Console(SERIAL, sock, run.console_log(SERIAL), ended=f"{where} hung up")

    def ssh(
        self,
        keys: sshd.Keys,
        health: Callable[[], None],
        log: Console | None = None,
        transcript: Path | None = None,
        username: str | None = None,
    ) -> SshConnection:
        """SSH to the machine: as the lab's user (its own OS), or as `username`."""
        return SshConnection(
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
