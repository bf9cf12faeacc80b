"""Check a kernel series commit by commit: checkpatch --strict and a build of each."""

from __future__ import annotations

import subprocess
from pathlib import Path

from harness.build import kernel, source
from harness.core.errors import InfraError
from harness.core.progress import note


def commits(tree: Path, base: str) -> list[str]:
    out = source.git(tree, "rev-list", "--reverse", f"{base}..HEAD")
    return out.split()


def checkpatch(tree: Path, commit: str) -> str | None:
    """checkpatch --strict on one commit; its complaints, or None when clean."""
    patch = source.git(tree, "format-patch", "--stdout", "-1", commit)
    done = subprocess.run(
        ["perl", "scripts/checkpatch.pl", "--strict", "--no-tree", "-"],
        input=patch,
        cwd=tree,
        capture_output=True,
        text=True,
        check=False,
    )
    return None if done.returncode == 0 else done.stdout


def check(tree: Path, base: str = source.BASE_TAG, build: bool = True) -> list[str]:
    """Problems found in base..HEAD of `tree` (empty: every patch is clean and builds).

    The tree is left at the commit it was on.
    """
    tree = tree.resolve()
    if source.git(tree, "status", "--porcelain", "--untracked-files=no"):
        raise InfraError(f"{tree} has uncommitted changes; commit or stash them first")
    head = source.git(tree, "rev-parse", "--abbrev-ref", "HEAD").strip()
    if head == "HEAD":
        head = source.git(tree, "rev-parse", "HEAD").strip()
    problems = []
    try:
        for commit in commits(tree, base):
            title = source.git(tree, "log", "-1", "--format=%h %s", commit)
            note(f"checking {title.strip()}")
            complaints = checkpatch(tree, commit)
            if complaints:
                problems.append(f"{title.strip()}: checkpatch --strict:\n{complaints}")
            if build:
                source.git(tree, "checkout", "-q", commit)
                try:
                    kernel.build(source.user_source(tree))
                except InfraError as exc:
                    problems.append(f"{title.strip()}: does not build: {exc}")
    finally:
        source.git(tree, "checkout", "-q", head)
    return problems
