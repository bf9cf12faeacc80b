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
from harness.pipeline import session
from tests.conftest import MKH, TRANSPORT, qemu_processes

pytestmark = pytest.mark.qemu


def mkh(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MKH, *args], capture_output=True, text=True, timeout=timeout, check=False
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
