"""A lab on localhost: the stand-in machine, exported through a labgrid coordinator.

The stand-in's console server and SSH service are resources of a labgrid
exporter connected to a coordinator, both started here on loopback ports;
the tests reach the machine through a RemotePlace they acquire, as a lab
user would, with the stand-in's QMP reset as the place's power command.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from harness.build import images
from harness.target.machine import free_port
from tests.conftest import stock_tree
from tests.lab import standin

BIN = Path(sys.executable).parent
PLACE = "mkh-standin"
GROUP = "mkh-standin"
STARTUP = 60.0  # seconds for the coordinator and exporter to come up
# What the kernel under test gets on the stand-in, as a lab owner writes it.
CMDLINE = "console=ttyS0 ignore_loglevel mkh.tty=ttyS0 mkkernel_pool=256M"


@dataclass
class LocalLab:
    env_file: Path
    machine: standin.StandIn
    coordinator: str

    def client(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "labgrid-client"), "-x", self.coordinator, "-p", PLACE, *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


def _wait_for(what: str, ready: object, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP
    while not callable(ready) or not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up: {log.read_text()[-2000:]}")
        time.sleep(0.2)


def _start(args: list[str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            args, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def local_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalLab]:
    root = tmp_path_factory.mktemp("lab")
    own_os = images.resolve(images.kernel_choice(tree=stock_tree()))
    machine = standin.start(root / "machine", own_os)
    address = f"127.0.0.1:{free_port()}"
    processes: list[subprocess.Popen[bytes]] = []
    try:
        coordinator_log = root / "coordinator.log"
        (root / "coordinator").mkdir()
        processes.append(
            _start(
                [str(BIN / "labgrid-coordinator"), "-l", address],
                root / "coordinator",
                coordinator_log,
            )
        )
        _wait_for(
            "the labgrid coordinator",
            lambda: "listening on" in coordinator_log.read_text(),
            processes[-1],
            coordinator_log,
        )
        exporter_yaml = root / "exporter.yaml"
        exporter_yaml.write_text(
            yaml.safe_dump(
                {
                    GROUP: {
                        "NetworkSerialPort": {
                            "host": "127.0.0.1",
                            "port": machine.serial_port,
                            "speed": 115200,
                            "protocol": "raw",
                        },
                        "NetworkService": {
                            "address": "127.0.0.1",
                            "port": machine.ssh_port,
                            "username": "root",
                        },
                    }
                }
            )
        )
        exporter_log = root / "exporter.log"
        processes.append(
            _start(
                [
                    str(BIN / "labgrid-exporter"),
                    "-c",
                    address,
                    "--name",
                    "mkh-exporter",
                    "--hostname",
                    "127.0.0.1",
                    str(exporter_yaml),
                ],
                root,
                exporter_log,
            )
        )
        lab = LocalLab(root / "lab.yaml", machine, address)

        def exported() -> bool:
            listed = subprocess.run(
                [str(BIN / "labgrid-client"), "-x", address, "resources"],
                capture_output=True,
                text=True,
                check=False,
            )
            return f"{GROUP}/NetworkService" in listed.stdout

        _wait_for("the labgrid exporter", exported, processes[-1], exporter_log)
        for step in (["create"], ["add-match", f"mkh-exporter/{GROUP}/*"], ["acquire"]):
            done = lab.client(*step)
            assert done.returncode == 0, f"labgrid-client {step}: {done.stderr}"
        lab.env_file.write_text(
            yaml.safe_dump(
                {
                    "options": {"coordinator_address": address},
                    "targets": {
                        "main": {
                            "resources": {"RemotePlace": {"name": PLACE}},
                            "drivers": {
                                "ExternalPowerDriver": {
                                    "cmd_on": machine.power_command("on"),
                                    "cmd_off": machine.power_command("off"),
                                    "cmd_cycle": machine.power_command("cycle"),
                                },
                                "SSHDriver": {"keyfile": str(machine.key.client_file)},
                            },
                            "options": {
                                "mkh_cmdline": CMDLINE,
                                "mkh_boot_timeout": 180.0,
                                "mkh_recover_timeout": 300.0,
                            },
                        }
                    },
                }
            )
        )
        yield lab
        lab.client("release")
    finally:
        for process in reversed(processes):
            _stop(process)
        machine.stop()
