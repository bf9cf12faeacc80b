import subprocess
from pathlib import Path

import pytest

from harness.build import source
from harness.core.errors import InfraError


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args],
        check=True,
        capture_output=True,
        text=True,
        env={**source.GIT_ENV, "PATH": "/usr/bin:/bin"},
    ).stdout


def fake_kernel(repo: Path) -> None:
    repo.mkdir()
    (repo / "Makefile").write_text("VERSION = 6\nPATCHLEVEL = 12\nSUBLEVEL = 117\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    git(repo, "tag", source.BASE_TAG)


def test_series_lists_patches_in_order_and_skips_comments(patches_dir: Path) -> None:
    for name in ("0001-a.patch", "0002-b.patch"):
        (patches_dir / name).write_text("x")
    (patches_dir / "series").write_text("# the series\n0002-b.patch\n\n0001-a.patch  # first\n")
    assert [p.name for p in source.series_patches()] == ["0002-b.patch", "0001-a.patch"]


def test_series_naming_a_missing_patch_is_an_error(patches_dir: Path) -> None:
    (patches_dir / "series").write_text("0001-gone.patch\n")
    with pytest.raises(InfraError, match=r"0001-gone\.patch"):
        source.series_patches()


def test_export_then_apply_round_trips_the_commits(tmp_path: Path, patches_dir: Path) -> None:
    tree = tmp_path / "linux"
    fake_kernel(tree)
    (patches_dir / "0001-stale.patch").write_text("old")
    for n in (1, 2):
        (tree / f"file{n}.c").write_text(f"int x{n};\n")
        git(tree, "add", "-A")
        git(tree, "commit", "-q", "-m", f"subsystem: change {n}\n\nWhy change {n}.")
    written = source.export_patches(tree)
    assert [p.name for p in written] == [
        "0001-subsystem-change-1.patch",
        "0002-subsystem-change-2.patch",
    ]
    assert not (patches_dir / "0001-stale.patch").exists()
    assert (patches_dir / "series").read_text().splitlines() == [p.name for p in written]

    clean = tmp_path / "clean"
    fake_kernel(clean)
    source.apply_series(clean, tmp_path / "apply.log")
    assert (clean / "file2.c").read_text() == "int x2;\n"
    log = git(clean, "log", "--format=%s", f"{source.BASE_TAG}..HEAD").split("\n")
    assert log[:2] == ["subsystem: change 2", "subsystem: change 1"]


def test_a_patch_that_does_not_apply_is_named(tmp_path: Path, patches_dir: Path) -> None:
    tree = tmp_path / "linux"
    fake_kernel(tree)
    (patches_dir / "0001-bad.patch").write_text(
        "From: x <x@y>\nSubject: [PATCH] bad\n\n---\n"
        "diff --git a/nothere.c b/nothere.c\n--- a/nothere.c\n+++ b/nothere.c\n"
        "@@ -1 +1 @@\n-a\n+b\n"
    )
    (patches_dir / "series").write_text("0001-bad.patch\n")
    with pytest.raises(InfraError, match=r"applying 0001-bad\.patch"):
        source.apply_series(tree, tmp_path / "apply.log")


def test_makefile_version_and_non_kernel_trees(tmp_path: Path) -> None:
    tree = tmp_path / "k"
    tree.mkdir()
    (tree / "Makefile").write_text("VERSION = 6\nPATCHLEVEL = 12\nSUBLEVEL = 9\n")
    assert source.makefile_version(tree) == "6.12.9"
    with pytest.raises(InfraError, match="not a kernel tree"):
        source.makefile_version(tmp_path)
