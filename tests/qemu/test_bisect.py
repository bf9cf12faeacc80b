"""mkh bisect on a real kernel tree: the series plus a planted bug, found by git bisect run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.build import source
from harness.core.paths import cache_dir
from harness.pipeline import bisect
from harness.pipeline.bisect import BisectRequest

pytestmark = [
    pytest.mark.qemu,
    pytest.mark.own_kernel,
    pytest.mark.qemu_guest("bisects with guests of its own"),
]

KEXEC_CORE = "kernel/kexec_core.c"
EMPTY = "No kimages loaded"
# The guest's check that the planted bug breaks.
CHECK = f"grep -qx '{EMPTY}' /proc/kimage\n"


def commit(tree: Path, path: str, old: str, new: str, message: str) -> str:
    file = tree / path
    file.write_text(file.read_text().replace(old, new, 1))
    env = {**os.environ, **source.GIT_ENV}
    subprocess.run(["git", "-C", str(tree), "commit", "-qam", message], check=True, env=env)
    return bisect.git(tree, "rev-parse", "HEAD")


@pytest.fixture
def tree() -> Path:
    """A kernel tree with the series, kept in the cache per series so that its build stays warm."""
    root = cache_dir("bisect-selftest")
    tree = root / f"tree-{source.series_digest()[:12]}"
    if not (tree / ".git").exists():
        for old in root.glob("tree-*"):  # an earlier series' (a tree is 1.5 GB), its log
            if old.is_dir():
                shutil.rmtree(old)
            else:
                old.unlink()
        source.make_kernel_tree(tree)
        bisect.git(tree, "tag", "selftest-base")
    bisect.git(tree, "checkout", "-q", "-f", "-B", "selftest", "selftest-base")
    return tree


def test_bisect_finds_the_commit_that_planted_a_bug(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its steps build the plain kernel whatever variant the suite runs on
    # (make coverage, DEBUG_KERNEL=1): what is tested is the bisection.
    for variant in ("MKH_DEBUG_KERNEL", "MKH_COVERAGE_KERNEL"):
        monkeypatch.delenv(variant, raising=False)
    good = bisect.git(tree, "rev-parse", "HEAD")
    commit(tree, KEXEC_CORE, "/* Every loaded image", "/* Listed: every loaded image", "comment")
    planted = commit(tree, KEXEC_CORE, f'"{EMPTY}\\n"', '"No kimage loaded\\n"', "plant the bug")
    bad = commit(tree, KEXEC_CORE, "/* Listed: every", "/* Listed here: every", "comment again")
    script = tmp_path / "check.sh"
    script.write_text(CHECK)
    report = bisect.run(BisectRequest(tree, good, bad, script=script))
    assert (report.first_bad, report.subject) == (planted, "plant the bug")
    # Its step booted the planted kernel, and the check failed there.
    assert report.run_dir is not None
    result = json.loads((report.run_dir / "result.json").read_text())
    assert (result["verdict"], result["exit_code"]) == ("FAIL", 1), result
    assert bisect.git(tree, "rev-parse", "HEAD") == bad
