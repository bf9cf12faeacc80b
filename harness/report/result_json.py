"""result.json: how a run ended and what it ran on, kept in its run directory.

Verdicts and the exit codes they stand for:

PASS 0, FAIL (the command's status; 1 for a failed test), CRASH 123,
TIMEOUT 124, INFRA 125, INTERRUPTED 128 + the signal (130 Ctrl-C, 143
SIGTERM, 129 SIGHUP).
"""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from harness.build import bzimage, source
from harness.build.images import Images, KernelChoice
from harness.core import atomic
from harness.core.errors import (
    EXIT_INFRA,
    GuestExited,
    GuestTimeout,
    HarnessError,
    Interrupted,
    KernelCrash,
)
from harness.core.paths import REPO
from harness.core.rundir import RunDir

FILE = "result.json"
EXIT_FAIL = 1  # a failed test (a failed command keeps its own status)
EXIT_CTRL_C = 130


@dataclass(frozen=True)
class Verdict:
    name: str
    exit_code: int


def verdict(error: BaseException | None, status: int = 0) -> Verdict:
    """The verdict of a run that raised `error`, or else ended with a command's `status`.

    A failed assertion (GuestCommandFailed is one) is FAIL; any other error
    that is neither a crash, a timeout nor an interruption is INFRA.
    """
    if error is None:
        return Verdict("PASS", 0) if status == 0 else Verdict("FAIL", status)
    if isinstance(error, Interrupted):
        return Verdict("INTERRUPTED", error.exit_code)
    if isinstance(error, KeyboardInterrupt):
        return Verdict("INTERRUPTED", EXIT_CTRL_C)
    if isinstance(error, (KernelCrash, GuestExited)):
        return Verdict("CRASH", error.exit_code)
    if isinstance(error, GuestTimeout):
        return Verdict("TIMEOUT", error.exit_code)
    if isinstance(error, AssertionError):
        return Verdict("FAIL", EXIT_FAIL)
    return Verdict("INFRA", error.exit_code if isinstance(error, HarnessError) else EXIT_INFRA)


@cache
def qemu_version(qemu: str) -> str | None:
    """The first line of `qemu --version`, None if it does not answer."""
    try:
        done = subprocess.run([qemu, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = done.stdout.splitlines()
    return lines[0] if done.returncode == 0 and lines else None


def _qemu(run: RunDir) -> dict[str, str | None]:
    """QEMU's version and accelerator, from the command line the run kept."""
    path = run.file("qemu-cmdline.txt")
    if not path.exists():
        return {"version": None, "accel": None}  # QEMU never started
    argv = shlex.split(path.read_text())
    accel = argv[argv.index("-accel") + 1] if "-accel" in argv[:-1] else None
    return {"version": qemu_version(argv[0]), "accel": accel}


@cache
def harness_commit() -> dict[str, object] | None:
    """The harness's git commit, and whether its checkout had changes (None outside git)."""

    def git(*args: str) -> str | None:
        done = subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False
        )
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return None
    return {"commit": commit, "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def _sha256(path: Path | None) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path and path.is_file() else None


def write(run: RunDir, outcome: Verdict, images: Images, choice: KernelChoice, what: str) -> Path:
    """Write result.json for a finished run (after QEMU has stopped); its path."""
    run.mark("result")
    timings = run.file("timings.json")
    data = {
        "what": what,
        "verdict": outcome.name,
        "exit_code": outcome.exit_code,
        "kernel": {
            "path": str(images.kernel),
            "version": bzimage.version(images.kernel),
            # The series is known only for the default build.
            "series_sha256": source.series_digest() if choice.default else None,
            "config_sha256": _sha256(images.config),
            "source": images.description,
        },
        "qemu": _qemu(run),
        "harness": harness_commit(),
        "timings": json.loads(timings.read_text()) if timings.exists() else {},
    }
    target = run.file(FILE)
    atomic.write_bytes(target, (json.dumps(data, indent=1) + "\n").encode())
    return target


@dataclass
class Status:
    """What a recorded run sets when it ends without an exception."""

    value: int = 0


@contextmanager
def recorded(run: RunDir, images: Images, choice: KernelChoice, what: str) -> Iterator[Status]:
    """Write result.json when the block ends: from its exception, else the status it set."""
    status = Status()
    try:
        yield status
    except BaseException as exc:
        try:
            write(run, verdict(exc), images, choice, what)
        except OSError as failed:  # the run's own error matters more
            exc.add_note(f"result.json not written: {failed}")
        raise
    write(run, verdict(None, status.value), images, choice, what)
