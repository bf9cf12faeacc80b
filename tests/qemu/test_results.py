"""What a run leaves behind: result.json, the kernel it really booted, the end on a signal."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pexpect
import pytest

from harness.build import bzimage
from harness.build.images import Images
from harness.core.errors import EXIT_CRASH
from harness.core.paths import REPO
from tests.conftest import MKH, TRANSPORT, qemu_processes

pytestmark = pytest.mark.qemu


def mkh(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MKH, *args], capture_output=True, text=True, timeout=600, env=env, check=False
    )


def result_json(run: Path) -> dict[str, Any]:
    data = json.loads((run / "result.json").read_text())
    assert isinstance(data, dict)
    return data


def wait_for_text(path: Path, text: str, seconds: float = 300.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        time.sleep(0.2)
    raise AssertionError(f"{text!r} never reached {path}")


def test_run_boots_the_mkh_kernel(guest_images: Images, tmp_path: Path) -> None:
    # A copy at a path of its own, and a `make` that fails: mkh must boot exactly this file.
    kernel = tmp_path / "bzImage"
    shutil.copyfile(guest_images.kernel, kernel)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "make").write_text(f"#!/bin/sh\ntouch {tmp_path / 'make-called'}\nexit 1\n")
    (bin_dir / "make").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MKH_KERNEL")}
    env.update(MKH_KERNEL=str(kernel), PATH=f"{bin_dir}:{os.environ['PATH']}")
    art = tmp_path / "art"
    done = mkh("run", "--artifacts", str(art), "--", "uname", "-r", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == bzimage.version(kernel)
    assert f" -kernel {kernel} " in (art / "qemu-cmdline.txt").read_text()
    assert result_json(art)["kernel"]["path"] == str(kernel)
    assert not (tmp_path / "make-called").exists()


def test_passing_run_result(guest_images: Images, tmp_path: Path) -> None:
    art = tmp_path / "art"
    done = mkh("run", "--artifacts", str(art), "--", "uname", "-r")
    assert done.returncode == 0, done.stderr
    data = result_json(art)
    assert (data["verdict"], data["exit_code"]) == ("PASS", 0)
    assert data["what"] == "mkh run: uname -r"
    kernel = data["kernel"]
    assert kernel["version"] == done.stdout.strip()
    assert kernel["path"] == str(guest_images.kernel)
    if guest_images.config is not None:
        config = guest_images.config.read_bytes()
        assert kernel["config_sha256"] == hashlib.sha256(config).hexdigest()
    assert data["qemu"]["version"].startswith("QEMU emulator version ")
    assert data["qemu"]["accel"] in ("kvm", "tcg")
    timings = data["timings"]
    assert timings["qemu-started"] < timings["shell-ready"] < timings["qemu-stopped"]


def test_crashing_run_result(guest_images: Images, tmp_path: Path) -> None:
    art = tmp_path / "art"
    done = mkh("run", "--artifacts", str(art), "--", "echo c > /proc/sysrq-trigger")
    assert done.returncode == EXIT_CRASH, done.stderr
    data = result_json(art)
    assert (data["verdict"], data["exit_code"]) == ("CRASH", EXIT_CRASH)
    assert "qemu-stopped" in data["timings"]


@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)], ids=["SIGTERM", "SIGHUP"]
)
def test_signal_stops_qemu_and_keeps_the_logs(
    guest_images: Images, tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    art = tmp_path / "art"
    run = subprocess.Popen(
        [*MKH, "run", "--artifacts", str(art), "--", "echo started-$((6 * 7)); sleep 1000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Where the command's output shows while it runs.
    log = art / ("ssh.log" if TRANSPORT == "ssh" else "console-ttyS0.log")
    try:
        wait_for_text(log, "started-42")
        run.send_signal(sig)
        _, stderr = run.communicate(timeout=60)
    finally:
        run.kill()
        run.wait()
    assert run.returncode == code, stderr
    assert stderr.splitlines()[-1] == f"mkh: interrupted by {sig.name}; artifacts: {art}"
    assert qemu_processes() == []
    assert "started-42" in log.read_text()
    data = result_json(art)
    assert (data["verdict"], data["exit_code"]) == ("INTERRUPTED", code)
    assert "qemu-stopped" in data["timings"]


INNER_PYTEST = [
    sys.executable,
    "-m",
    "pytest",
    "-q",
    "-p",
    "tests.conftest",
    "-p",
    "no:cacheprovider",
]
INNER_TESTS = """
def test_passes(boot):
    boot(smp=1).check("true")


def test_fails(boot):
    boot(smp=1).check("false")
"""


def test_boot_fixture_writes_the_test_verdict(guest_images: Images, tmp_path: Path) -> None:
    tests = tmp_path / "test_inner.py"
    tests.write_text(INNER_TESTS)
    base = tmp_path / "base"
    done = subprocess.run(
        [*INNER_PYTEST, f"--basetemp={base}", str(tests)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
        check=False,
    )
    assert "1 failed, 1 passed" in done.stdout, done.stdout + done.stderr
    passed = result_json(base / "test_passes0" / "run0")
    failed = result_json(base / "test_fails0" / "run0")
    assert (passed["verdict"], passed["exit_code"]) == ("PASS", 0)
    assert (failed["verdict"], failed["exit_code"]) == ("FAIL", 1)
    assert failed["what"].endswith("test_inner.py::test_fails")


@pytest.mark.parametrize("end", ["leave", "SIGHUP"])
def test_shell_result(guest_images: Images, tmp_path: Path, end: str) -> None:
    art = tmp_path / "art"
    session = pexpect.spawn(
        MKH[0], [*MKH[1:], "shell", "--artifacts", str(art)], encoding="utf-8", timeout=300
    )
    session.expect(r"mkh-guest:\d+ # ")
    if end == "leave":
        session.send("\x1d")  # Ctrl-]
    else:
        session.kill(signal.SIGHUP)
    session.expect(pexpect.EOF)
    session.close()
    expected = ("PASS", 0) if end == "leave" else ("INTERRUPTED", 129)
    assert session.exitstatus == expected[1]
    assert qemu_processes() == []
    data = result_json(art)
    assert (data["what"], data["verdict"], data["exit_code"]) == ("mkh shell", *expected)
