"""A QEMU machine reached only the way a lab machine is.

Its serial console is a raw TCP console server (QEMU serves it, as ser2net
would), its own OS (a stock 6.12 kernel with the mkh initramfs) answers SSH
for a lab key, and `power.py` resets it through QMP, as a lab's power
command would power-cycle a machine.  It is started without -no-reboot, so
a reset or a reboot boots its own OS again.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from harness.build import initramfs
from harness.build.images import Images
from harness.target import accel, sshd
from harness.target.machine import GUEST_SSH_PORT, die_with_parent, free_port, process_name

POWER = Path(__file__).with_name("power.py")
OWN_OS_CMDLINE = f"console=ttyS0 ignore_loglevel mkh.tty=ttyS0 {sshd.KERNEL_PARAM}"


@dataclass
class StandIn:
    directory: Path
    key: sshd.Keys  # the lab key: what the machine's own OS authorizes
    serial_port: int
    ssh_port: int
    process: subprocess.Popen[bytes]

    @property
    def qmp(self) -> Path:
        return self.directory / "qmp.sock"

    def power_command(self, action: str) -> str:
        return f"{sys.executable} {POWER} {self.qmp} {action}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start(directory: Path, own_os: Images, cpus: int = 4, memory: str = "2G") -> StandIn:
    """Boot the stand-in with `own_os` as the machine's own OS; it answers once booted."""
    directory.mkdir(parents=True, exist_ok=True)
    key = sshd.make_keys(directory / "lab-key")
    initrd = initramfs.with_files(own_os.initrd, sshd.layer(key), directory / "own-os-initrd.img")
    serial_port, ssh_port = free_port(), free_port()
    qemu = "qemu-system-x86_64"
    chosen = accel.choose("auto", qemu)
    args = [
        qemu,
        "-name",
        f"mkh-standin,process={process_name()}",
        "-machine",
        "pc",
        "-accel",
        chosen,
        "-cpu",
        "host" if chosen == "kvm" else "max",
        "-smp",
        str(cpus),
        "-m",
        memory,
        "-nodefaults",
        "-display",
        "none",
        "-no-user-config",
        "-kernel",
        str(own_os.kernel),
        "-initrd",
        str(initrd),
        "-append",
        OWN_OS_CMDLINE,
        "-serial",
        f"tcp:127.0.0.1:{serial_port},server=on,wait=off",
        "-netdev",
        f"user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:{ssh_port}-:{GUEST_SSH_PORT}",
        "-device",
        "virtio-net-pci,netdev=net0",
        "-qmp",
        f"unix:{directory / 'qmp.sock'},server=on,wait=off",
    ]
    (directory / "qemu-cmdline.txt").write_text(" ".join(args) + "\n")
    with (directory / "qemu-stderr.log").open("wb") as log:
        process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
    standin = StandIn(directory, key, serial_port, ssh_port, process)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=1)
        raise RuntimeError(
            f"the stand-in's QEMU exited: {(directory / 'qemu-stderr.log').read_text()}"
        )
    return standin
