"""result.json: how a run ended and what it ran on, kept in its run directory.

The verdicts and the exit codes they stand for are harness/core/errors.py's.
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
from harness.core.errors import Verdict, verdict
from harness.core.paths import REPO
from harness.core.rundir import RunDir

FILE = "result.json"


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


def record(
    run: RunDir,
    error: BaseException | None,
    status: int,
    images: Images,
    choice: KernelChoice,
    what: str,
) -> None:
    """Write result.json for a run that raised `error`, else ended with `status`.

    After an error, a result.json that cannot be written is a note on the
    error: the run's own error matters more.
    """
    try:
        write(run, verdict(error, status), images, choice, what)
    except OSError as failed:
        if error is None:
            raise
        error.add_note(f"result.json not written: {failed}")


@contextmanager
def recorded(run: RunDir, images: Images, choice: KernelChoice, what: str) -> Iterator[Status]:
    """Write result.json when the block ends: from its exception, else the status it set."""
    status = Status()
    try:
        yield status
    except BaseException as exc:
        record(run, exc, 0, images, choice, what)
        raise
    record(run, None, status.value, images, choice, what)
