"""Run directories: unique when created at once, and pruning spares runs in use."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from harness.core import rundir
from harness.core.rundir import RunDir


@pytest.fixture
def runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MKH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "runs"


def test_run_dirs_created_at_once_are_distinct(runs: Path) -> None:
    made: list[RunDir] = []
    start = threading.Barrier(8)

    def create() -> None:
        start.wait()
        made.append(RunDir())

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    paths = {run.path for run in made}
    assert len(made) == len(paths) == 8
    assert all(path.parent == runs.resolve() and path.is_dir() for path in paths)
    assert (runs / "latest").resolve() in paths
    assert not [p for p in runs.iterdir() if p.name.startswith(".")]
    for run in made:
        run.close()


def test_pruning_spares_a_run_in_use(runs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rundir, "KEEP_RUNS", 3)
    runs.mkdir(parents=True)
    old = [runs / f"2000010{n}-000000-old" for n in range(5)]
    for path in old:
        path.mkdir()
    # The oldest directory of all belongs to a run still going (a lock is per
    # open file, so holding it in this process is as good as in another).
    live = RunDir(runs / "19990101-000000-live")
    newest = RunDir()
    newest.close()
    left = sorted(p.name for p in runs.iterdir() if not p.is_symlink())
    assert left == sorted([live.path.name, old[4].name, newest.path.name])

    live.close()
    with RunDir() as last:
        assert not live.path.exists()
        assert (runs / "latest").resolve() == last.path
