"""The harness side of instances' consoles over shared memory, without QEMU."""

from __future__ import annotations

import re
import socket
import threading
import time
from pathlib import Path

import pytest

from harness.bench import density
from harness.core.errors import InfraError
from harness.multikernel import dtb, mkcon
from harness.multikernel.mk import MKCON, Multikernel
from harness.report import bench
from harness.target import ssh, uarts
from harness.target.console import Console
from harness.target.instances import InstanceConsoles
from harness.target.protocol import CommandProtocol, Completed
from harness.target.ssh import RelaySocket


class FakeChannel:
    """A paramiko channel's surface, over one end of a socket pair."""

    def __init__(self, sock: socket.socket, exits_on_eof: bool = True) -> None:
        self.sock = sock
        self.closed = False
        self.status_event = threading.Event()  # the remote command's exit status came
        self.exits_on_eof = exits_on_eof

    def fileno(self) -> int:
        return self.sock.fileno()

    def recv(self, size: int) -> bytes:
        return self.sock.recv(size)

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def shutdown_write(self) -> None:
        self.sock.shutdown(socket.SHUT_WR)
        if self.exits_on_eof:
            self.status_event.set()

    def close(self) -> None:
        self.closed = True
        self.sock.close()


def wait_for(condition: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.02)
    return False


def test_relay_socket_carries_both_ways_and_ends_with_the_channel(tmp_path: Path) -> None:
    remote, ours = socket.socketpair()
    channel = FakeChannel(ours)
    console = Console("mkcon3", RelaySocket(channel, "mkcon3"), tmp_path / "c.log")
    remote.sendall(b"[    0.000000] Linux version 6.12\r\nmkh-guest: ready\r\n")
    console.watch()
    assert wait_for(lambda: "mkh-guest: ready" in console.tail())
    console.send("echo typed\n")
    assert remote.recv(100) == b"echo typed\n"
    # The relay's end (the instance stopped): the console sees the end of its stream.
    remote.close()
    assert wait_for(lambda: console.closed)
    assert wait_for(lambda: channel.closed)
    console.close()
    assert "Linux version" in (tmp_path / "c.log").read_text()


def test_closing_the_console_ends_the_relay_and_waits_for_it_before_closing(
    tmp_path: Path,
) -> None:
    remote, ours = socket.socketpair()
    channel = FakeChannel(ours, exits_on_eof=False)
    console = Console("mkcon1", RelaySocket(channel, "mkcon1"), tmp_path / "c.log")
    closing = threading.Thread(target=console.close)
    closing.start()
    assert remote.recv(10) == b""  # the relay in the host sees its stdin end
    time.sleep(0.3)
    assert not channel.closed  # its command has not exited yet
    channel.status_event.set()  # it exits
    assert wait_for(lambda: channel.closed)
    closing.join(5)
    assert not closing.is_alive()


def test_a_relay_that_does_not_exit_is_closed_after_the_grace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ssh, "RELAY_EXIT_GRACE", 0.2)
    _remote, ours = socket.socketpair()
    channel = FakeChannel(ours, exits_on_eof=False)
    console = Console("mkcon1", RelaySocket(channel, "mkcon1"), tmp_path / "c.log")
    console.close()
    assert wait_for(lambda: channel.closed, timeout=2)


def test_a_crash_on_the_stream_is_seen_by_its_detector(tmp_path: Path) -> None:
    remote, ours = socket.socketpair()
    console = Console("mkcon2", RelaySocket(FakeChannel(ours), "mkcon2"), tmp_path / "c.log")
    console.watch()
    remote.sendall(b"[    1.0] Kernel panic - not syncing: lkdtm\r\n")
    assert wait_for(lambda: console.crash is not None)
    assert console.crash is not None and console.crash.kind == "panic"
    console.close()


def test_relay_command_waits_for_the_device() -> None:
    assert mkcon.relay_command(7) == "mkctl console --id 7 --timeout 60"
    assert mkcon.name(7) == "mkcon7"


class FakeCommands(CommandProtocol):
    """Commands that must not run."""

    name = "fake"

    def __init__(self) -> None:
        self.commands: list[str] = []

    def run(self, command: str, timeout: float = 60.0) -> Completed:
        self.commands.append(command)
        raise AssertionError(f"nothing may run: {command}")

    def write_file(self, path: str, data: bytes) -> None:
        raise AssertionError(f"nothing may be written: {path}")


class FakeConsoles(InstanceConsoles):
    """Just enough of a target's instance consoles for Multikernel to pick one."""

    def __init__(self, uarts: tuple[str, ...] = ()) -> None:
        self._fake_uarts = uarts

    @property
    def uarts(self) -> tuple[str, ...]:
        return self._fake_uarts


def test_free_console_is_a_uart_while_one_is_left_then_mkcon() -> None:
    mk = Multikernel(FakeCommands(), FakeConsoles(("ttyS1", "ttyS2")))
    assert mk.free_console() == "ttyS1"
    mk.console_of = {1: "ttyS1", 2: "ttyS2"}
    assert mk.free_console() == MKCON
    lab = Multikernel(FakeCommands(), FakeConsoles())
    assert lab.free_console() == MKCON


def test_an_unknown_console_is_refused_before_anything_runs() -> None:
    commands = FakeCommands()
    mk = Multikernel(commands, FakeConsoles(("ttyS1",)))
    with pytest.raises(InfraError, match="no console 'ttyS7'"):
        mk.spawn(dtb.Instance("small", 1, (1,), 32 << 20), console="ttyS7")
    assert commands.commands == []


def test_density_report_gives_ratios_to_the_quiet_host() -> None:
    run = density.DensityRun(
        accel="tcg",
        cpus=8,
        memory=23 << 20,
        smallest=density.Smallest(23 << 20, "E2BIG"),
        spawn_seconds=[1.0, 2.0, 3.0, 1.5, 1.5, 1.5, 1.5],
        all_started=12.0,
        pool_stride=24 << 20,
        instance_memtotal=10000 << 10,
        instance_memfree=3000 << 10,
        host_bytes_per_instance=4000 << 10,
        latency={"no instance": [0.05] * 3, "7 idle": [0.05] * 3, "7 spinning": [0.1] * 3},
    )
    text = bench.density_table(run)
    assert "7 of 7" in text
    assert "median 1.50 s, min 1.00, max 3.00" in text
    assert re.search(r"smallest that boots +23 MiB; a MiB less: E2BIG", text)
    assert "100.0 ms median of 3 (2.00x quiet)" in text
    assert bench.density_json(run)["memory"] == 23 << 20


def test_crash_reports_name_the_instance_console() -> None:
    assert uarts.describe("mkcon12") == "mkcon12 (console over shared memory of instance 12)"
    assert uarts.describe("kmsg1") == "kmsg1 (kernel log of the ttyS1 instance)"
    assert uarts.describe("mkconx") == "mkconx"
