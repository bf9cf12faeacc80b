"""Locks between mkh processes: waiting, building a cache entry once, the shared tree."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.build import source
from harness.core.lock import is_locked, lock_file, locked
from harness.core.paths import REPO
from tests.unit.test_source import fake_kernel, git

# Each script holds what it takes until the file `release` exists.
HOLD = """
import sys, time
from pathlib import Path
from harness.core.lock import locked

entry, log, release = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
with locked(entry, "the test entry"):
    with log.open("a") as out:
        out.write(f"in {sys.argv[4]}\\n")
    while not release.exists():
        time.sleep(0.02)
    with log.open("a") as out:
        out.write(f"out {sys.argv[4]}\\n")
"""

# A kernel build whose configure and compile steps are fakes that count themselves.
FAKE_BUILD = """
import sys, time
from pathlib import Path
from harness.build import kernel
from harness.build.source import KernelSource

tree, counter = Path(sys.argv[1]), Path(sys.argv[2])

def configure(source, out, log):
    (out / ".config").write_text("CONFIG_FAKE=y\\n")
    return out / ".config"

def compile_kernel(source, out, log):
    with counter.open("a") as handle:
        handle.write("compiled\\n")
    time.sleep(1.0)
    image = out / "arch" / "x86" / "boot" / "bzImage"
    image.parent.mkdir(parents=True, exist_ok=True)
    image.write_bytes(b"fake bzImage")
    (out / "vmlinux").write_bytes(b"fake vmlinux")
    (out / "System.map").write_text("ffffffff81000000 T _text\\n")
    return image

kernel.configure = configure
kernel.compile_kernel = compile_kernel
built = kernel.build(KernelSource(tree, "6.12.0", "a fake tree", "fake:1"))
print(built.bzimage, built.reused)
"""

# A user of the shared source tree: notes when it has the tree and checks
# that nobody switches it while it holds it.
TREE_USER = """
import sys, time
from pathlib import Path
from harness.build import source

tree, patches, log, release = map(Path, sys.argv[1:5])
source.PATCHES_DIR = patches
source.base_repo = lambda: (tree, "1.0")
with source.default_source():
    head = source.git(tree, "rev-parse", "HEAD")
    with log.open("a") as out:
        out.write(f"start {patches.name}\\n")
    while not release.exists():
        time.sleep(0.02)
    assert source.git(tree, "rev-parse", "HEAD") == head, "the tree was switched underneath"
    with log.open("a") as out:
        out.write(f"end {patches.name}\\n")
"""


class Child:
    """A Python script in its own process, its stderr kept in a file."""

    def __init__(self, script: str, *args: object, cache: Path, stderr: Path) -> None:
        env = {**os.environ, "MKH_CACHE": str(cache), "PYTHONPATH": str(REPO)}
        self.stderr = stderr
        with stderr.open("w") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-c", script, *map(str, args)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )

    def finish(self) -> tuple[str, str]:
        out, _ = self.process.communicate(timeout=60)
        err = self.stderr.read_text()
        assert self.process.returncode == 0, err
        return out, err


def wait_for(file: Path, text: str) -> None:
    deadline = time.monotonic() + 30
    while not (file.exists() and text in file.read_text()):
        assert time.monotonic() < deadline, f"{text!r} never appeared in {file}"
        time.sleep(0.02)


def test_a_second_process_waits_for_the_lock_and_says_so(tmp_path: Path) -> None:
    entry, log, release, cache = (tmp_path / n for n in ("entry", "log", "release", "cache"))
    first = Child(HOLD, entry, log, release, "first", cache=cache, stderr=tmp_path / "err1")
    wait_for(log, "in first\n")
    second = Child(HOLD, entry, log, release, "second", cache=cache, stderr=tmp_path / "err2")
    wait_for(second.stderr, "mkh: waiting for the test entry")
    time.sleep(0.2)  # the second really blocks: it must not have got in meanwhile
    assert log.read_text() == "in first\n"
    release.touch()
    _, first_err = first.finish()
    _, second_err = second.finish()
    assert log.read_text().splitlines() == ["in first", "out first", "in second", "out second"]
    assert "waiting" not in first_err
    assert second_err.count("waiting for the test entry") == 1


def test_is_locked_sees_a_lock_held_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MKH_CACHE", str(tmp_path / "cache"))
    entry = tmp_path / "entry"
    assert not is_locked(lock_file(entry))
    with locked(entry, "the entry"):
        assert is_locked(lock_file(entry))
    assert not is_locked(lock_file(entry))


def test_two_builders_of_one_kernel_image_build_it_once(tmp_path: Path) -> None:
    tree, counter, cache = tmp_path / "linux", tmp_path / "compiled", tmp_path / "cache"
    tree.mkdir()
    builders = [
        Child(FAKE_BUILD, tree, counter, cache=cache, stderr=tmp_path / f"err{n}") for n in (1, 2)
    ]
    results = [b.finish()[0].split() for b in builders]
    assert counter.read_text() == "compiled\n"
    assert sorted(reused for _, reused in results) == ["False", "True"]
    image = Path(results[0][0])
    assert results[1][0] == str(image)
    assert image.read_bytes() == b"fake bzImage"
    # Only the finished entry: no scratch directory left next to it.
    assert [p.name for p in (cache / "images").iterdir()] == [image.parent.name]


@pytest.fixture
def shared_tree(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A fake shared tree, an empty series 'one' and a one-patch series 'two'."""
    tree = tmp_path / "linux"
    fake_kernel(tree)
    (tree / "added.c").write_text("int added;\n")
    git(tree, "add", "-A")
    git(tree, "commit", "-q", "-m", "add a file")
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    git(tree, "format-patch", "-q", "-o", str(two), f"{source.BASE_TAG}..HEAD")
    (two / "series").write_text("".join(p.name + "\n" for p in two.glob("*.patch")))
    git(tree, "checkout", "-q", "--detach", source.BASE_TAG)
    return tree, one, two


def test_switching_the_shared_tree_waits_for_its_users(
    tmp_path: Path, shared_tree: tuple[Path, Path, Path]
) -> None:
    tree, one, two = shared_tree
    log, release, cache = tmp_path / "log", tmp_path / "release", tmp_path / "cache"
    first = Child(TREE_USER, tree, one, log, release, cache=cache, stderr=tmp_path / "err1")
    wait_for(log, "start one\n")
    second = Child(TREE_USER, tree, two, log, release, cache=cache, stderr=tmp_path / "err2")
    wait_for(second.stderr, "mkh: waiting for the kernel source tree")
    release.touch()
    first.finish()
    second.finish()
    assert log.read_text().splitlines() == ["start one", "end one", "start two", "end two"]
    assert (tree / "added.c").exists()


def test_users_of_the_same_series_share_the_tree(
    tmp_path: Path, shared_tree: tuple[Path, Path, Path]
) -> None:
    tree, one, _ = shared_tree
    log, release, cache = tmp_path / "log", tmp_path / "release", tmp_path / "cache"
    first = Child(TREE_USER, tree, one, log, release, cache=cache, stderr=tmp_path / "err1")
    wait_for(log, "start one\n")
    second = Child(TREE_USER, tree, one, log, release, cache=cache, stderr=tmp_path / "err2")
    wait_for(log, "start one\nstart one\n")
    release.touch()
    first.finish()
    assert "waiting" not in second.finish()[1]
    assert log.read_text().splitlines() == ["start one", "start one", "end one", "end one"]
