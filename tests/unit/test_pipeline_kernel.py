"""harness/pipeline/kernel.py: build, kernel-tree, series-check and export-patches on their own."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.build.images import KernelChoice
from harness.core.errors import InfraError
from harness.pipeline import kernel
from tests.unit.fakes import fake_bzimage
from tests.unit.test_source import fake_kernel, git

# checkpatch's stand-in: a patch that adds a TODO is not clean.
CHECKPATCH = """\
my $bad = 0;
while (<STDIN>) { if (/^\\+.*TODO/) { print "WARNING: TODO left in\\n"; $bad = 1; } }
exit $bad;
"""


def commit(tree: Path, name: str, text: str, message: str) -> None:
    (tree / name).write_text(text)
    git(tree, "add", "-A")
    git(tree, "commit", "-q", "-m", message)


def test_build_gives_the_prebuilt_kernel_and_its_initramfs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MKH_CACHE", str(tmp_path / "cache"))
    image = fake_bzimage(tmp_path / "bzImage")
    built = kernel.build(kernel.BuildRequest(KernelChoice(prebuilt=image)))
    assert (built.kernel, built.description) == (image, f"prebuilt {image}")
    assert built.initrd.is_file() and built.initrd.is_relative_to(tmp_path / "cache")


def test_kernel_tree_refuses_a_directory_with_files(tmp_path: Path) -> None:
    dest = tmp_path / "linux"
    dest.mkdir()
    (dest / "mine").write_text("keep me")
    with pytest.raises(InfraError, match=f"{dest} already exists and is not empty"):
        kernel.kernel_tree(kernel.KernelTreeRequest(dest))
    assert [p.name for p in dest.iterdir()] == ["mine"]


def test_series_check_names_the_commit_checkpatch_refuses(tmp_path: Path) -> None:
    tree = tmp_path / "linux"
    fake_kernel(tree)
    (tree / "scripts").mkdir()
    commit(tree, "scripts/checkpatch.pl", CHECKPATCH, "scripts: checkpatch")
    base = git(tree, "rev-parse", "HEAD").strip()
    commit(tree, "a.c", "int a;\n", "subsystem: clean")
    commit(tree, "b.c", "int b; /* TODO */\n", "subsystem: not clean")
    head = git(tree, "rev-parse", "HEAD")

    problems = kernel.series_check(kernel.SeriesCheckRequest(tree, base, build=False))
    assert len(problems) == 1
    title, _, complaint = problems[0].partition(": checkpatch --strict:\n")
    assert title.endswith(" subsystem: not clean")
    assert complaint == "WARNING: TODO left in\n"
    assert git(tree, "rev-parse", "HEAD") == head

    (tree / "a.c").write_text("int changed;\n")
    with pytest.raises(InfraError, match="has uncommitted changes"):
        kernel.series_check(kernel.SeriesCheckRequest(tree, base, build=False))


def test_export_patches_writes_the_series(tmp_path: Path, patches_dir: Path) -> None:
    tree = tmp_path / "linux"
    fake_kernel(tree)
    commit(tree, "a.c", "int a;\n", "subsystem: add a")
    written = kernel.export_patches(kernel.ExportRequest(tree))
    assert written == [patches_dir / "0001-subsystem-add-a.patch"]
    assert "+int a;" in written[0].read_text()
    assert (patches_dir / "series").read_text() == "0001-subsystem-add-a.patch\n"
