"""The per-run artifacts directory: QEMU command line, console logs, config, timings.

A run holds a lock on a file in its directory until it is closed (or its
process ends), so pruning old runs in the cache never removes one in use.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path

from harness.core import lock
from harness.core.paths import cache_dir

KEEP_RUNS = 20
LOCK = ".mkh-run.lock"


class RunDir:
    """One run's directory.  Default runs live in the cache (the newest are kept).

    Close it (or use it as a context manager) when the run ends.
    """

    def __init__(self, path: Path | None = None) -> None:
        self._lock: int | None
        if path is None:
            runs = cache_dir("runs")
            _prune(runs)
            path, self._lock = _create(runs)
            _point_latest(runs, path)
        else:
            path.mkdir(parents=True, exist_ok=True)
            self._lock = lock.acquire(path / LOCK, f"the run directory {path}")
        self.path = path.resolve()
        self._timings: dict[str, float] = {}
        self._started = time.monotonic()

    def file(self, name: str) -> Path:
        return self.path / name

    def console_log(self, console: str) -> Path:
        return self.file(f"console-{console}.log")

    def keep_config(self, config: Path) -> None:
        shutil.copyfile(config, self.file("kernel.config"))

    def timing(self, event: str) -> float:
        """Seconds from the start of the run to a marked event."""
        return self._timings[event]

    def mark(self, event: str) -> float:
        """Record seconds since the run started at `event`; returns them."""
        seconds = round(time.monotonic() - self._started, 3)
        self._timings[event] = seconds
        self.file("timings.json").write_text(json.dumps(self._timings, indent=1) + "\n")
        return seconds

    def close(self) -> None:
        """The run is over: release its directory (to pruning)."""
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _create(runs: Path) -> tuple[Path, int]:
    """A new, unique run directory, already locked when it appears under its name."""
    staging = Path(tempfile.mkdtemp(dir=runs, prefix=time.strftime(".%Y%m%d-%H%M%S-")))
    staging.chmod(0o755)
    held = lock.acquire(staging / LOCK, f"the new run directory {staging}")
    path = runs / staging.name.removeprefix(".")
    staging.rename(path)
    return path, held


def _point_latest(runs: Path, path: Path) -> None:
    """Point runs/latest at `path`, replacing the old link in one step."""
    link = runs / f".latest-{secrets.token_hex(8)}"
    link.symlink_to(path.name)
    os.replace(link, runs / "latest")


def _prune(runs: Path) -> None:
    """Remove the oldest finished runs, leaving room for one more within KEEP_RUNS.

    Runs still in use (their lock is held) are never removed.
    """
    dirs = sorted(
        p for p in runs.iterdir() if p.is_dir() and not p.is_symlink() and p.name[0] != "."
    )
    finished = [d for d in dirs if not lock.is_locked(d / LOCK)]
    for old in finished[: max(0, len(dirs) - KEEP_RUNS + 1)]:
        shutil.rmtree(old, ignore_errors=True)
