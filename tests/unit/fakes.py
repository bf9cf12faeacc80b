"""Stand-ins the unit tests share, and the suite's conftest run on tests of their own."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Self

from harness.build.images import Images
from harness.core.errors import InfraError, KernelCrash
from harness.core.paths import REPO
from harness.core.rundir import RunDir
from harness.target.base import Target
from harness.target.options import TargetOptions
from harness.target.protocol import CommandProtocol, Completed

if TYPE_CHECKING:
    from harness.target.labgrid import Lab


def fake_bzimage(path: Path, release: str = "6.12.0-fake") -> Path:
    """A file with an x86 boot protocol header naming `release`."""
    head = bytearray(0x400)
    head[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", head, 0x206, 0x20F)  # boot protocol 2.15
    struct.pack_into("<H", head, 0x20E, 0x100)
    text = f"{release} (fake@fake) #1".encode()
    head[0x300 : 0x300 + len(text)] = text
    path.write_bytes(bytes(head) + b"\0" * 1024)
    return path


class FakeTarget(Target):
    """Records the steps it is taken through; the step named `crash` raises a kernel crash."""

    def __init__(self, run_dir: RunDir, crash: str | None, status: int) -> None:
        self.run_dir = run_dir
        self.crash = crash
        self.status = status
        self.steps: list[str] = []
        self.kexecs: list[tuple[Path | None, Path | None, str | None]] = []

    def _step(self, name: str) -> None:
        self.steps.append(name)
        if name == self.crash:
            raise KernelCrash("ttyS0", "panic", f"Kernel panic at {name}", "")

    @property
    def commands(self) -> CommandProtocol:
        raise AssertionError("commands go through run()")

    @property
    def debug(self) -> None:
        return None

    def run(self, command: str, timeout: float = 60.0) -> Completed:
        self._step("run")
        return Completed(f"ran {command}\n", self.status)

    def boot(self) -> Self:
        self._step("boot")
        return self

    def kexec(
        self, kernel: Path | None = None, initrd: Path | None = None, append: str | None = None
    ) -> None:
        self._step("kexec")
        self.kexecs.append((kernel, initrd, append))

    def health(self) -> None:
        pass

    def finish(self) -> None:
        self._step("finish")

    def close(self) -> None:
        self.steps.append("close")


class Machines:
    """make_target's stand-in: each target it made, crashing where the test says.

    It refuses gdb, as make_target does for a lab machine.
    """

    def __init__(self) -> None:
        self.made: list[FakeTarget] = []
        self.crash: list[str | None] = []  # the step each next target crashes at
        self.status = 0  # what a command exits with
        self.options: list[TargetOptions] = []  # each target's

    def __call__(
        self, images: Images, options: TargetOptions, run_dir: RunDir, lab: Lab | None = None
    ) -> Target:
        if options.gdb_port is not None:
            raise InfraError("no gdb here")
        self.options.append(options)
        made = FakeTarget(run_dir, self.crash.pop(0) if self.crash else None, self.status)
        self.made.append(made)
        return made


def inner_suite(
    root: Path, files: dict[str, str], *options: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """pytest with the suite's conftest (tests/conftest.py) on `files`, written to `root`.

    It runs without this process's pytest and mkh variables, with `env`.
    """
    (root / "pytest.ini").write_text("[pytest]\n")
    for name, text in files.items():
        (root / name).write_text(text)
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "MKH_"))}
    return subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider"),
            *("-c", str(root / "pytest.ini"), *options, str(root)),
        ],
        cwd=REPO,
        env={**inherited, "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
