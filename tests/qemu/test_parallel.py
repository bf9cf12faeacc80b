"""Two `mkh` runs at the same moment on one empty cache."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from harness.build.images import Images
from tests.conftest import MKH

pytestmark = pytest.mark.qemu


def test_two_runs_at_once_share_the_cache(guest_images: Images, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    env = {**os.environ, "MKH_CACHE": str(cache)}
    mkh_run = [*MKH, "run", "--kernel", str(guest_images.kernel), "--smp", "1", "--"]
    runs = [
        subprocess.Popen(
            [*mkh_run, f"echo hello-$((40 + {n}))"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in (1, 2)
    ]
    results = [run.communicate(timeout=600) for run in runs]
    for run, (out, err), n in zip(runs, results, (41, 42), strict=True):
        assert run.returncode == 0, err
        assert out == f"hello-{n}\n"
    # The initramfs and the boot image were built by one of them; the other waited.
    stderr = "".join(err for _, err in results)
    assert stderr.count("Building the initramfs: done") == 1, stderr
    made = list((cache / "images").iterdir())
    assert sorted(p.suffix for p in made) == [".gz", ".img", ".log"], made
    dirs = [d for d in (cache / "runs").iterdir() if not d.is_symlink()]
    assert len(dirs) == 2
    assert (cache / "runs" / "latest").resolve() in dirs
