"""A host live update: what the guest is told, the session's kexec request, the bench's table."""

from __future__ import annotations

import json
import socket
from collections.abc import Mapping
from pathlib import Path

import pytest

from harness.bench.update import UpdateRun, longest_gap
from harness.core.errors import InfraError
from harness.core.rundir import RunDir
from harness.pipeline import session
from harness.report.bench import update_table
from harness.target import live_update
from harness.target.protocol import CommandProtocol, Completed
from tests.unit.fakes import FakeTarget


class Recorder(CommandProtocol):
    """A guest that answers each command as `answers` say, recording what it was sent."""

    def __init__(self, answers: dict[str, Completed]) -> None:
        self.answers = answers
        self.sent: list[str] = []
        self.files: dict[str, bytes] = {}

    @property
    def name(self) -> str:
        return "ttyS0"

    def run(self, command: str, timeout: float = 60.0) -> Completed:
        self.sent.append(command)
        for prefix, answer in self.answers.items():
            if command.startswith(prefix):
                return answer
        return Completed("", 0)

    def write_file(self, path: str, data: bytes) -> None:
        self.files[path] = data


BOOTED = Completed("console=uart8250,io,0xe9 mkkernel_pool=1G retain_initrd\n", 0)


def test_by_default_the_same_kernel_initramfs_and_command_line() -> None:
    guest = Recorder({"cat /proc/cmdline": BOOTED})
    plan = live_update.stage(guest, None, None, None)
    assert plan == live_update.Plan("/boot/bzImage", "/tmp/mkh-kexec/initrd", BOOTED.output.strip())
    assert f"cat {live_update.RETAINED_INITRD} > /tmp/mkh-kexec/initrd" in guest.sent
    assert plan.command() == (
        "mkctl kexec --kernel /boot/bzImage --initrd /tmp/mkh-kexec/initrd --cmdline "
        "'console=uart8250,io,0xe9 mkkernel_pool=1G retain_initrd'; "
        "echo mkh-kexec-refused:$?"
    )
    assert live_update.REFUSED_LINE.search("mkh-kexec-refused:1\r\n")
    # The echo of the typed line is no refusal.
    assert not live_update.REFUSED_LINE.search("echo mkh-kexec-refused:$?")


def test_given_files_are_copied_in_and_missing_ones_refused_first(tmp_path: Path) -> None:
    kernel = tmp_path / "bzImage"
    kernel.write_bytes(b"kernel")
    guest = Recorder({})
    plan = live_update.stage(guest, kernel, None, "console=ttyS0 other")
    assert guest.files == {"/tmp/mkh-kexec/bzImage": b"kernel"}
    assert (plan.kernel, plan.cmdline) == ("/tmp/mkh-kexec/bzImage", "console=ttyS0 other")
    fresh = Recorder({})
    with pytest.raises(InfraError, match="no such file to kexec into"):
        live_update.stage(fresh, tmp_path / "missing", None, None)
    assert fresh.sent == []


def test_a_kdump_kernel_is_the_host_s_on_one_cpu_without_its_pool() -> None:
    host = "console=uart8250,io,0xe9 mkkernel_pool=1G crashkernel=192M retain_initrd"
    guest = Recorder({"cat /proc/cmdline": Completed(host + "\n", 0)})
    plan = live_update.load_crash(guest)
    assert plan.cmdline == "console=uart8250,io,0xe9 retain_initrd nr_cpus=1 reset_devices"
    assert guest.sent[-1] == (
        "mkctl load --id 0 --flags 0x2 --kernel /boot/bzImage --initrd /tmp/mkh-kexec/initrd "
        "--cmdline 'console=uart8250,io,0xe9 retain_initrd nr_cpus=1 reset_devices'"
    )


def test_a_host_without_crashkernel_is_refused_before_anything_is_loaded() -> None:
    guest = Recorder({"cat /proc/cmdline": BOOTED})
    with pytest.raises(InfraError, match="boot it with crashkernel=SIZE"):
        live_update.load_crash(guest)
    assert guest.sent == ["cat /proc/cmdline"]


def test_a_host_that_kept_no_initramfs_says_so() -> None:
    guest = Recorder({"cat /sys/firmware/initrd": Completed("No such file or directory", 1)})
    with pytest.raises(InfraError, match="booted with retain_initrd"):
        live_update.stage(guest, None, None, None)


def _ask(guest: FakeTarget, request: Mapping[str, object]) -> dict[str, object]:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        assert not session._handle(guest, theirs, dict(request))
        answer: dict[str, object] = json.loads(ours.makefile("rb").readline())
    return answer


def test_the_session_kexecs_its_guest_and_reports_where_its_logs_are(tmp_path: Path) -> None:
    with RunDir(tmp_path / "run") as run:
        guest = FakeTarget(run, None, 0)
        request = {"op": "kexec", "kernel": "/k/bzImage", "initrd": None, "append": "quiet"}
        assert _ask(guest, request) == {"run": str(run.path)}
        assert guest.kexecs == [(Path("/k/bzImage"), None, "quiet")]


def test_a_host_that_does_not_come_back_is_the_sessions_answer(tmp_path: Path) -> None:
    with RunDir(tmp_path / "run") as run:
        guest = FakeTarget(run, "kexec", 0)
        answer = _ask(guest, {"op": "kexec"})
        assert "Kernel panic at kexec" in str(answer["error"])


def test_mkh_kexec_refuses_a_missing_kernel_before_asking_the_session(tmp_path: Path) -> None:
    with pytest.raises(InfraError, match="no such file"):
        session.kexec("nobody", tmp_path / "missing", None, None)


def test_the_update_table_gives_both_ratios_to_a_full_boot() -> None:
    assert longest_gap([1.0, 1.1, 1.9, 2.0]) == pytest.approx(0.8)
    assert longest_gap([]) == 0.0
    table = update_table(UpdateRun(10.0, 1.0, 5.0, 0.25, 120, "tcg"))
    assert "host downtime (last answer of the old host to the new)" in table
    assert table.splitlines()[-1].startswith(
        "downtime/full boot ratio 0.50; instance gap/full boot ratio 0.03"
    )
