"""When a guest hangs: registers and backtraces are saved before anything is stopped; --gdb."""

from __future__ import annotations

import re
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.build import source
from harness.build.images import Images
from harness.build.kernel import companions
from harness.core.errors import EXIT_TIMEOUT, GuestTimeout, KernelCrash
from harness.multikernel.dtb import Instance
from harness.multikernel.mk import Multikernel
from harness.target.base import Target
from tests.conftest import MKH, TRANSPORT, qemu_only

pytestmark = pytest.mark.qemu
Boot = Callable[..., Target]
HUNG = "echo HUNG_TASK > /sys/kernel/debug/provoke-crash/DIRECT"


def test_a_hung_command_leaves_registers_and_backtraces(
    guest_images: Images, tmp_path: Path
) -> None:
    art = tmp_path / "art"
    done = subprocess.run(
        [*MKH, "run", "--smp", "2", "--artifacts", str(art), "--timeout", "5", "--", HUNG],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == EXIT_TIMEOUT, done.stderr
    registers = (art / "hang-registers.txt").read_text()
    assert re.findall(r"^CPU#(\d+)", registers, re.M) == ["0", "1"]
    assert "RIP=" in registers
    report = (art / "hang-report.txt").read_text()
    # The channel that timed out: the host's shell, or SSH when the suite runs over it.
    assert f"timed out on {'ssh' if TRANSPORT == 'ssh' else 'ttyS0'}" in report
    # Each vCPU's RIP named from System.map (a kernel function, not "?").
    assert len(re.findall(r"^CPU#\d RIP=[0-9a-f]+ \w+\+0x[0-9a-f]+$", report, re.M)) == 2
    # SysRq w through the keyboard: the task stuck in LKDTM, with its stack.
    backtraces = (art / "hang-kmsg.txt").read_text(errors="replace")
    assert "Show Blocked State" in backtraces
    assert "lkdtm_HUNG_TASK" in backtraces
    assert "Show backtrace of all active CPUs" in backtraces


def test_a_hung_instance_leaves_registers_of_every_cpu(boot: Boot) -> None:
    guest = boot(smp=2, memory="2G", append="mkkernel_pool=1G")
    shell = Multikernel(guest, guest.instances).spawn(Instance("web-server", 1, (1,), 0x20000000))
    with pytest.raises(GuestTimeout):
        shell.run(HUNG, timeout=5)
    run = guest.run_dir
    # CPU 1 belongs to the instance: QEMU still shows where it is.
    registers = run.file("hang-registers.txt").read_text()
    assert re.findall(r"^CPU#(\d+)", registers, re.M) == ["0", "1"]
    assert "timed out on ttyS1" in run.file("hang-report.txt").read_text()
    assert "Show Blocked State" in run.file("hang-kmsg.txt").read_text(errors="replace")
    assert shell.unusable  # D state: Ctrl-C cannot bring it back
    assert guest.check("echo host-ok") == "host-ok\n"


def test_gdb_option_starts_a_gdbstub_and_names_vmlinux(guest_images: Images) -> None:
    mkh = subprocess.Popen(
        [*MKH, "run", "--gdb", "--", "sleep 20"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert mkh.stderr is not None
    for line in mkh.stderr:
        found = re.search(r"gdb -ex 'target remote 127\.0\.0\.1:(\d+)' (\S+)", line)
        if found:
            break
    else:
        pytest.fail("mkh printed no gdb command line")
    port, vmlinux = int(found.group(1)), Path(found.group(2))
    assert vmlinux.read_bytes()[:4] == b"\x7fELF"
    # The remote protocol's "why did you stop" query answers with a stop reply.
    with socket.create_connection(("127.0.0.1", port), timeout=30) as gdb:
        gdb.sendall(b"$?#3f")
        reply = b""
        while b"#" not in reply.lstrip(b"+"):
            reply += gdb.recv(4096)
        assert re.search(rb"\$[TS][0-9a-f]{2}", reply), reply
        gdb.sendall(b"+$c#63")  # continue, then let mkh finish
    assert mkh.wait(timeout=120) == 0


def test_a_saved_crash_decodes_to_source_lines(boot: Boot, guest_images: Images) -> None:
    vmlinux = companions(guest_images.kernel).vmlinux
    sections = subprocess.run(
        ["readelf", "-S", str(vmlinux)], capture_output=True, text=True, check=False
    ).stdout
    if vmlinux is None or ".debug_info" not in sections:
        pytest.skip("needs a kernel with debug info: make test-qemu DEBUG_KERNEL=1")
    guest = boot(smp=2)
    with pytest.raises(KernelCrash):
        guest.run("echo EXCEPTION > /sys/kernel/debug/provoke-crash/DIRECT")
    qemu_only(guest).shell.take_crash()
    saved = guest.run_dir.file("crash-kmsg.txt")
    tree, _ = source.base_repo()
    decoded = subprocess.run(
        ["scripts/decode_stacktrace.sh", str(vmlinux)],
        stdin=saved.open(),
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    assert re.search(r"lkdtm_EXCEPTION \(drivers/misc/lkdtm/bugs\.c:\d+\)", decoded), decoded
