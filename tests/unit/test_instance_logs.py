"""The logs the host keeps of its instances: crash-checked, on a recorded log."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.core.errors import KernelCrash
from harness.core.rundir import RunDir
from harness.target import instance_logs
from harness.target.protocol import CommandProtocol, Completed

FIXTURE = Path(__file__).parent / "fixtures" / "instance-log-warning.log"
LOG = FIXTURE.read_text()
WARNING = "WARNING: CPU: 0 PID: 1 at web-server-by-hand"


class HostWithLogs(CommandProtocol):
    """A host whose instances' logs are `logs`; `listing` False: no multikernel filesystem."""

    name = "host"

    def __init__(self, logs: dict[str, str], listing: bool = True) -> None:
        self.logs = logs
        self.listing = listing
        self.commands: list[str] = []

    def run(self, command: str, timeout: float = 60.0) -> Completed:
        self.commands.append(command)
        if command.startswith("ls "):
            return Completed(" ".join(self.logs) + "\n", 0) if self.listing else Completed("", 2)
        name = command.split("/")[5]
        return Completed(self.logs[name], 0)

    def write_file(self, path: str, data: bytes) -> None:
        raise AssertionError(f"nothing may be written: {path}")


def test_a_warning_in_an_instance_log_is_a_crash_of_that_instance() -> None:
    crash = instance_logs.find_crash("web-server", LOG)
    assert crash is not None
    assert (crash.console, crash.kind) == ("instance web-server", "warning")
    assert crash.line.endswith(WARNING)


def test_the_command_line_that_holds_the_text_is_no_crash() -> None:
    before = LOG[: LOG.index(f"] {WARNING}")]
    assert "mkh.run=" in before and WARNING in before
    assert instance_logs.find_crash("web-server", before) is None


def test_check_names_the_instance_and_keeps_its_log(tmp_path: Path) -> None:
    host = HostWithLogs({"database": "[    1.0] clean\n", "web-server": LOG})
    with RunDir(tmp_path / "run") as run, pytest.raises(KernelCrash) as raised:
        instance_logs.check(host, run, skip=())
    assert "kernel crash (warning) on instance web-server" in str(raised.value)
    assert (tmp_path / "run" / "instance-web-server.log").read_text() == LOG
    assert (tmp_path / "run" / "instance-database.log").read_text() == "[    1.0] clean\n"


def test_check_leaves_out_instances_whose_console_carries_their_log(tmp_path: Path) -> None:
    host = HostWithLogs({"web-server": LOG})
    with RunDir(tmp_path / "run") as run:
        instance_logs.check(host, run, skip={"web-server"})
    assert not any("cat " in command for command in host.commands)


def test_check_on_a_kernel_without_the_multikernel_filesystem_reads_nothing(
    tmp_path: Path,
) -> None:
    host = HostWithLogs({}, listing=False)
    with RunDir(tmp_path / "run") as run:
        instance_logs.check(host, run, skip=())
    assert len(host.commands) == 1
