"""The SSH transport: commands, files and crashes of a guest driven over SSH.

These run in `make test` whatever MKH_TRANSPORT says; `make test-qemu
TRANSPORT=ssh` runs the rest of the suite over SSH as well.
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import paramiko
import pexpect
import pytest

from harness.build.images import Images
from harness.core.errors import GuestTimeout, InfraError, KernelCrash
from harness.multikernel import dtb
from harness.multikernel.mk import Multikernel
from harness.target.base import Target
from harness.target.ssh import SshConnection
from tests.conftest import MKH, qemu_only, qemu_processes

pytestmark = [
    pytest.mark.qemu,
    pytest.mark.qemu_guest("these test the QEMU guest's SSH transport (a lab run is over SSH)"),
]
Boot = Callable[..., Target]
INSTANCE = dtb.Instance("ssh-driven", 1, (1,), 0x10000000)


def ssh_guest(boot: Boot, **options: object) -> Target:
    guest = boot(transport="ssh", **options)
    assert guest.ssh is not None
    return guest


def test_mkh_run_keeps_stdout_stderr_and_status_apart(guest_images: Images) -> None:
    done = subprocess.run(
        [*MKH, "run", "--transport", "ssh", "--", "echo out; echo err >&2; exit 4"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 4, done.stderr
    assert done.stdout == "out\n"
    assert "err\n" in done.stderr.splitlines(keepends=True)


def test_commands_run_over_ssh_not_the_console(boot: Boot) -> None:
    guest = ssh_guest(boot, smp=1)
    ran = guest.run("echo $SSH_CONNECTION; echo to-stderr >&2; exit 3")
    assert ran.status == 3
    assert ran.stdout is not None and ran.stdout.split()[2:] == ["10.0.2.15", "22"]
    assert ran.stderr == "to-stderr\n"
    # The console's shell saw none of it; the run's SSH transcript has it all.
    assert "to-stderr" not in guest.run_dir.console_log("ttyS0").read_text()
    transcript = guest.run_dir.file("ssh.log").read_text()
    assert "$ echo $SSH_CONNECTION; echo to-stderr >&2; exit 3\n" in transcript
    assert "to-stderr\n[exit 3]\n" in transcript


def test_files_go_both_ways_over_sftp(boot: Boot, tmp_path: Path) -> None:
    guest = ssh_guest(boot, smp=1)
    assert guest.ssh is not None
    data = bytes(range(256)) * 4096  # 1 MiB, every byte value
    guest.write_file("/tmp/blob", data)
    assert guest.check("md5sum /tmp/blob").split()[0] == hashlib.md5(data).hexdigest()
    assert guest.ssh.read_file("/tmp/blob") == data
    script = tmp_path / "tool"
    script.write_text("#!/bin/sh\necho tool ran\n")
    script.chmod(0o755)
    guest.ssh.put(script, "/tmp/tool")
    assert guest.check("/tmp/tool") == "tool ran\n"
    guest.check("seq 1 50000 > /tmp/seq")
    guest.ssh.get("/tmp/seq", tmp_path / "seq")
    assert (tmp_path / "seq").read_text() == "".join(f"{n}\n" for n in range(1, 50001))


def test_large_output_comes_back_whole(boot: Boot) -> None:
    guest = ssh_guest(boot, smp=1)
    ran = guest.run("seq 1 200000; seq 1 1000 >&2")
    assert ran.stdout == "".join(f"{n}\n" for n in range(1, 200001))
    assert ran.stderr == "".join(f"{n}\n" for n in range(1, 1001))


def test_a_command_that_outlives_its_timeout_is_reported_and_ssh_goes_on(boot: Boot) -> None:
    guest = ssh_guest(boot, smp=1)
    with pytest.raises(GuestTimeout, match="timeout after 3s on ssh"):
        guest.run("sleep 60", timeout=3)
    assert "timed out on ssh" in guest.run_dir.file("hang-report.txt").read_text()
    assert guest.check("echo still here") == "still here\n"


def test_a_crash_caused_over_ssh_is_caught_on_the_kernel_log(boot: Boot) -> None:
    guest = ssh_guest(boot, smp=1)
    with pytest.raises(KernelCrash) as info:
        guest.run("echo BUG > /sys/kernel/debug/provoke-crash/DIRECT", timeout=60)
    assert info.value.console == "kmsg" and info.value.kind == "bug"
    qemu_only(guest).shell.take_crash()


def test_a_host_key_that_is_not_the_runs_is_refused(boot: Boot) -> None:
    guest = ssh_guest(boot, smp=1)
    assert guest.ssh is not None and qemu_only(guest).machine is not None
    other = replace(guest.ssh.keys, host=paramiko.ECDSAKey.generate())
    impostor = SshConnection("127.0.0.1", guest.ssh.port, other, qemu_only(guest).machine.health)
    with pytest.raises(InfraError, match="host key is not this run's"):
        impostor.connect(30)
    impostor.close()


def test_an_instance_is_spawned_and_reached_with_the_host_driven_over_ssh(boot: Boot) -> None:
    guest = ssh_guest(boot, smp=2, append="mkkernel_pool=256M")
    mk = Multikernel(guest, guest.instances)
    assert mk.upload(dtb.to_dtb([INSTANCE])).ok
    shell = mk.spawn(INSTANCE)
    assert shell.check("cat /sys/fs/multikernel/instances/ssh-driven/id") == "1\n"
    assert mk.status(INSTANCE.name) == "active"
    assert (
        guest.ssh is not None
        and guest.ssh.destination in guest.run_dir.file("ssh-command.txt").read_text()
    )


def test_mkh_shell_over_ssh_is_a_login_on_a_pty_and_exit_ends_it(guest_images: Images) -> None:
    session = pexpect.spawn(
        MKH[0],
        [*MKH[1:], "shell", "--transport", "ssh", "--smp", "1"],
        encoding="utf-8",
        timeout=300,
        dimensions=(33, 101),
    )
    try:
        session.expect("logged in over SSH; leave with exit or Ctrl-]")
        session.expect(r"mkh-guest:0 # ")
        session.sendline("tty; stty size; echo $SSH_CONNECTION")
        session.expect(r"/dev/pts/0\r\n33 101\r\n\S+ \d+ 10\.0\.2\.15 22\r\n")
        session.sendline("exit")
        session.expect(pexpect.EOF)
    finally:
        session.close(force=True)
    assert session.exitstatus == 0
    assert qemu_processes() == []
