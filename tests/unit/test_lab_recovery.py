"""A lab target names what failed: a console server that hung up, a power switch that failed."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.core.errors import GuestExited, InfraError
from harness.core.rundir import RunDir
from harness.target.console import Console
from harness.target.recovery import KexecStrategy


def test_a_console_server_that_hangs_up_is_named_not_qemu(tmp_path: Path) -> None:
    ours, server = socket.socketpair()
    console = Console(
        "serial", ours, tmp_path / "serial.log", ended="the console server 10.0.0.7:4001 hung up"
    )
    server.sendall(b"login: ")
    server.close()
    try:
        with pytest.raises(GuestExited) as raised:
            console.expect(["never printed"], 10, "the banner", lambda: None)
    finally:
        console.close()
    assert str(raised.value) == "the console server 10.0.0.7:4001 hung up while waiting on serial"
    assert "login: " in raised.value.tail


def test_qemu_ending_still_says_qemu_with_its_status() -> None:
    assert str(GuestExited("ttyS0", "", 1)) == "QEMU exited with status 1 while waiting on ttyS0"


class FailingSwitch:
    def __init__(self) -> None:
        self.cycles = 0

    def cycle(self) -> None:
        self.cycles += 1
        raise subprocess.CalledProcessError(1, ["power.py", "cycle"])


class Channel:
    def __init__(self) -> None:
        self.closed = False

    def connect(self, timeout: float) -> None:
        raise AssertionError("no login after a power cycle that failed")

    def close(self) -> None:
        self.closed = True


def strategy(tmp_path: Path) -> tuple[KexecStrategy, FailingSwitch, Channel]:
    switch, channel = FailingSwitch(), Channel()
    lab = SimpleNamespace(
        power=switch,
        key=None,
        settings=SimpleNamespace(recover_timeout=1.0),
        ssh=lambda *args, **kwargs: channel,
    )
    return KexecStrategy(lab, RunDir(tmp_path / "run"), lambda: None), switch, channel  # type: ignore[arg-type]


def test_a_power_switch_that_fails_is_an_infrastructure_error(tmp_path: Path) -> None:
    recovery, switch, channel = strategy(tmp_path)
    with pytest.raises(InfraError) as raised:
        recovery.power_cycle(channel)  # type: ignore[arg-type]
    assert switch.cycles == 1
    assert str(raised.value).startswith("the lab's power switch failed: Command '['power.py', ")
    assert str(raised.value).endswith(f"(log: {tmp_path / 'run' / 'console-serial.log'})")


def test_recovery_that_cannot_power_cycle_says_so_and_leaves_the_first_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recovery, switch, channel = strategy(tmp_path)
    recovery.recover("the kernel under test did not come up (a panic)")
    assert (switch.cycles, recovery.recovered, channel.closed) == (1, False, True)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == (
        "mkh: the kernel under test did not come up (a panic): "
        "power-cycling the lab machine back to its own OS"
    )
    assert lines[1].startswith("mkh: the lab's power switch failed: ")
    assert lines[1].endswith("; the lab machine stays as it is")
