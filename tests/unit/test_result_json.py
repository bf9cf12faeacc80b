import hashlib
import json
import shlex
import subprocess
from pathlib import Path

import pytest

from harness.build import images, source
from harness.build.images import Images
from harness.core.errors import (
    ConnectionLost,
    GuestCommandFailed,
    GuestExited,
    GuestTimeout,
    InfraError,
    Interrupted,
    KernelCrash,
    Verdict,
    verdict,
)
from harness.core.paths import REPO
from harness.core.rundir import RunDir
from harness.report import result_json
from tests.unit.fakes import fake_bzimage


@pytest.mark.parametrize(
    ("error", "status", "expected"),
    [
        (None, 0, ("PASS", 0)),
        (None, 7, ("FAIL", 7)),
        (AssertionError("x"), 0, ("FAIL", 1)),
        (GuestCommandFailed("ttyS0", "false", 1, ""), 0, ("FAIL", 1)),
        (KernelCrash("ttyS0", "panic", "Kernel panic", ""), 0, ("CRASH", 123)),
        (GuestTimeout("ttyS0", "x", 1, ""), 0, ("TIMEOUT", 124)),
        (InfraError("no qemu"), 0, ("INFRA", 125)),
        (GuestExited("ttyS0", ""), 0, ("CRASH", 123)),  # the guest ended by itself
        (ConnectionLost("ssh", "no session"), 0, ("INFRA", 125)),  # the guest still runs
        (RuntimeError("bug"), 0, ("INFRA", 125)),
        (KeyboardInterrupt(), 0, ("INTERRUPTED", 130)),
        (Interrupted(15), 0, ("INTERRUPTED", 143)),
        (Interrupted(1), 0, ("INTERRUPTED", 129)),
    ],
)
def test_verdicts_map_to_exit_codes(
    error: BaseException | None, status: int, expected: tuple[str, int]
) -> None:
    assert verdict(error, status) == Verdict(*expected)


def test_result_json_names_kernel_qemu_and_timings(tmp_path: Path) -> None:
    kernel = fake_bzimage(tmp_path / "bzImage", release="6.12.99-test")
    config = tmp_path / "config"
    config.write_text("CONFIG_SMP=y\n")
    qemu = tmp_path / "qemu"
    qemu.write_text("#!/bin/sh\necho 'QEMU emulator version 9.9.9'\necho '(c) someone'\n")
    qemu.chmod(0o755)
    run = RunDir(tmp_path / "run")
    run.file("qemu-cmdline.txt").write_text(shlex.join([str(qemu), "-accel", "tcg", "-m", "2G"]))
    run.mark("qemu-started")
    built = Images(kernel, tmp_path / "initrd", config, "prebuilt")

    path = result_json.write(run, Verdict("PASS", 0), built, images.KernelChoice(), "t")
    data = json.loads(path.read_text())
    assert path == run.file("result.json")
    assert (data["what"], data["verdict"], data["exit_code"]) == ("t", "PASS", 0)
    assert data["kernel"] == {
        "path": str(kernel),
        "version": "6.12.99-test",
        "series_sha256": source.series_digest(),
        "config_sha256": hashlib.sha256(b"CONFIG_SMP=y\n").hexdigest(),
        "source": "prebuilt",
    }
    assert data["qemu"] == {"version": "QEMU emulator version 9.9.9", "accel": "tcg"}
    assert set(data["timings"]) == {"qemu-started", "result"}
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    )
    assert data["harness"]["commit"] == head.stdout.strip()
    assert isinstance(data["harness"]["dirty"], bool)


def test_result_json_without_qemu_or_series(tmp_path: Path) -> None:
    kernel = fake_bzimage(tmp_path / "bzImage")
    run = RunDir(tmp_path / "run")
    built = Images(kernel, tmp_path / "initrd")
    choice = images.KernelChoice(prebuilt=kernel)
    result_json.write(run, Verdict("INFRA", 125), built, choice, "t")
    data = json.loads(run.file("result.json").read_text())
    assert data["qemu"] == {"version": None, "accel": None}
    assert (data["kernel"]["series_sha256"], data["kernel"]["config_sha256"]) == (None, None)


def test_recorded_writes_the_exception_and_reraises(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    built = Images(fake_bzimage(tmp_path / "bzImage"), tmp_path / "initrd")
    choice = images.KernelChoice()
    with (
        pytest.raises(GuestTimeout),
        result_json.recorded(run, built, choice, "t"),
    ):
        raise GuestTimeout("ttyS0", "x", 1, "")
    assert json.loads(run.file("result.json").read_text())["verdict"] == "TIMEOUT"
    with result_json.recorded(run, built, choice, "t") as status:
        status.value = 3
    assert json.loads(run.file("result.json").read_text())["exit_code"] == 3
