"""Keep-alive sessions: mkh up, exec, shell and down, and the idle timeout."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pexpect
import pytest

from harness.build.images import Images
from harness.build.initramfs import BOOT_INITRAMFS, BOOT_KERNEL
from harness.multikernel import dtb
from harness.pipeline import session
from tests.conftest import MKH, TRANSPORT, qemu_processes

pytestmark = pytest.mark.qemu


def mkh(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MKH, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


# An instance started by hand in a session, its console over shared memory.
SPAWN = (
    "dd if=/root/web.dtb of=/sys/fs/multikernel/device_tree bs=1M 2>/dev/null && "
    f"mkctl load --id 1 --kernel {BOOT_KERNEL} --initrd {BOOT_INITRAMFS} "
    "--cmdline 'console=mkcon0 mkh.tty=mkcon0' && "
    "echo 0 > /sys/devices/system/cpu/cpu1/online && mkctl exec --id 1 && "
    "mkctl wait --name web --state active --timeout 120"
)


def _name(tag: str) -> str:
    return f"t-{tag}-{os.getpid()}"


def test_up_exec_shell_down(guest_images: Images) -> None:
    name = _name("life")
    up = mkh("up", "--name", name, "--smp", "2")
    assert up.returncode == 0, up.stderr
    run_dir = up.stdout.strip()
    try:
        assert session.info(name) is not None
        again = mkh("up", "--name", name)
        assert again.returncode != 0 and f"session {name} is already up" in again.stderr
        done = mkh("exec", name, "--", "echo out; echo err >&2; exit 4")
        assert done.returncode == 4, done.stderr
        if TRANSPORT == "ssh":  # the streams stay apart
            assert (done.stdout, done.stderr.splitlines()[-1]) == ("out\n", "err")
        else:
            assert done.stdout == "out\nerr\n"  # one console: both streams, in order
        # The guest stays up between commands: what one wrote, the next reads.
        assert mkh("exec", name, "--", "echo kept > /tmp/f").returncode == 0
        assert mkh("exec", name, "--", "cat /tmp/f").stdout == "kept\n"
        # An interactive attach, and the session still answers after it.
        child = pexpect.spawn(MKH[0], [*MKH[1:], "shell", name], encoding="utf-8", timeout=120)
        child.expect("attached to session")
        child.sendline("echo inter$((40 + 2))")
        child.expect("inter42")
        child.send("\x1d")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0
        assert mkh("exec", name, "--", "nproc").stdout == "2\n"
    finally:
        down = mkh("down", name)
    assert down.returncode == 0, down.stderr
    assert session.info(name) is None
    assert not session.paths(name).socket.exists()
    verdict = json.loads((Path(run_dir) / "result.json").read_text())
    assert (verdict["verdict"], verdict["what"]) == ("PASS", f"mkh up {name}"), verdict
    missing = mkh("exec", name, "--", "true")
    assert missing.returncode != 0 and f"no session {name} is up" in missing.stderr


def test_a_forgotten_session_ends_itself(guest_images: Images) -> None:
    name = _name("idle")
    up = mkh("up", "--name", name, "--smp", "1", "--idle-timeout", "5")
    assert up.returncode == 0, up.stderr
    deadline = time.monotonic() + 120
    while session.info(name) is not None and time.monotonic() < deadline:
        time.sleep(1)
    assert session.info(name) is None, "the session outlived its idle timeout"
    assert not any(name in line for line in qemu_processes())


def test_mkh_kexec_live_updates_the_sessions_host_with_an_instance_running(
    guest_images: Images, tmp_path: Path
) -> None:
    name = _name("kexec")
    put = tmp_path / "note.txt"
    put.write_text("put-at-up\n")
    web = tmp_path / "web.dtb"
    web.write_bytes(dtb.to_dtb([dtb.Instance("web", 1, (1,), 256 << 20)]))
    up = mkh(
        *("up", "--name", name, "--smp", "2", "--append", "mkkernel_pool=512M"),
        *("--put", f"{put}:/root/note.txt", "--put", f"{web}:/root/web.dtb"),
    )
    assert up.returncode == 0, up.stderr
    try:
        spawn = mkh("exec", name, "--", SPAWN, timeout=300)
        assert spawn.returncode == 0, spawn.stdout + spawn.stderr
        boot_id = mkh("exec", name, "--", "cat /proc/sys/kernel/random/boot_id").stdout
        kexec = mkh("kexec", name)
        assert kexec.returncode == 0, kexec.stderr
        assert "the new host kernel answers" in kexec.stderr
        # The next command runs in the new host kernel, with the files of --put.
        assert mkh("exec", name, "--", "cat /proc/sys/kernel/random/boot_id").stdout != boot_id
        assert mkh("exec", name, "--", "cat /root/note.txt").stdout == "put-at-up\n"
        # The instance came through, and the new host drives it.
        status = mkh("exec", name, "--", "cat /sys/fs/multikernel/instances/web/status")
        assert status.stdout == "active\n", status.stdout + status.stderr
        ping = mkh("exec", name, "--", "mkctl ping --id 1 --count 1")
        assert ping.returncode == 0, ping.stdout + ping.stderr
        missing = mkh("kexec", name, "--kernel", str(tmp_path / "none"))
        assert missing.returncode != 0 and "none: no such file" in missing.stderr
    finally:
        down = mkh("down", name)
    assert down.returncode == 0, down.stderr
