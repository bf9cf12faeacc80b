"""Running host commands with their output kept in a log file."""

from __future__ import annotations

import os
import subprocess
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path

from harness.core.errors import InfraError
from harness.core.progress import Status

TAIL_LINES = 25


def run_logged(
    cmd: Sequence[str | os.PathLike[str]],
    log: Path,
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    step: Status | None = None,
    what: str | None = None,
) -> None:
    """Run `cmd`, appending its output to `log`; raise InfraError with the tail on failure.

    When a step is given, its status follows the command's latest output line.
    """
    argv = [os.fspath(c) for c in cmd]
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a", encoding="utf-8", errors="replace") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        try:
            child = subprocess.Popen(
                argv,
                cwd=cwd,
                env=full_env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
            )
        except OSError as exc:
            raise InfraError(f"cannot run {argv[0]}: {exc.strerror}", log) from exc
        assert child.stdout is not None
        for line in child.stdout:
            out.write(line)
            out.flush()
            tail.append(line.rstrip("\n"))
            if step is not None:
                step.update(line)
        status = child.wait()
    if status != 0:
        text = "\n".join(tail)
        label = what or argv[0]
        raise InfraError(f"{label} failed with status {status}; last lines:\n{text}\n", log)


def output(cmd: Sequence[str | os.PathLike[str]]) -> str:
    """Run a short command and return its stdout; InfraError if it fails."""
    argv = [os.fspath(c) for c in cmd]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise InfraError(f"cannot run {argv[0]}: {exc.strerror}") from exc
    if done.returncode != 0:
        raise InfraError(f"{' '.join(argv)} failed: {done.stderr.strip()}")
    return done.stdout
