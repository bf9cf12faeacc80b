"""The per-run artifacts directory: QEMU command line, console logs, config, timings."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from .paths import cache_dir

KEEP_RUNS = 20


class RunDir:
    """One run's directory.  Default runs live in the cache (the newest are kept)."""

    def __init__(self, path: Path | None = None) -> None:
        if path is None:
            runs = cache_dir("runs")
            stamp = time.strftime("%Y%m%d-%H%M%S")
            path = runs / f"{stamp}-{os.getpid()}"
            _prune(runs)
            latest = runs / "latest"
            path.mkdir(parents=True, exist_ok=True)
            latest.unlink(missing_ok=True)
            latest.symlink_to(path.name)
        self.path = path.resolve()
        self.path.mkdir(parents=True, exist_ok=True)
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


def _prune(runs: Path) -> None:
    dirs = sorted(p for p in runs.iterdir() if p.is_dir() and not p.is_symlink())
    for old in dirs[: max(0, len(dirs) - KEEP_RUNS + 1)]:
        shutil.rmtree(old, ignore_errors=True)
