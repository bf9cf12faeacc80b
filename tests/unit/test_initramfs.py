import gzip
import os
import subprocess
from pathlib import Path

import pytest

from harness.build import initramfs
from harness.core.errors import InfraError


def listing(archive: bytes) -> list[str]:
    done = subprocess.run(
        ["cpio", "-t", "-v", "--quiet"], input=archive, capture_output=True, check=True
    )
    return done.stdout.decode().splitlines()


def extract(archive: bytes, dest: Path) -> None:
    subprocess.run(["cpio", "-i", "-d", "--quiet"], input=archive, cwd=dest, check=True)


def tree(root: Path) -> None:
    (root / "bin").mkdir()
    (root / "bin" / "tool").write_text("#!/bin/sh\necho hi\n")
    (root / "bin" / "tool").chmod(0o755)
    (root / "etc").mkdir()
    (root / "etc" / "motd").write_text("hello\n")


def test_pack_is_reproducible_and_normalised(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    tree(one)
    tree(two)
    os.utime(two / "etc" / "motd", (12345, 12345))  # a different mtime must not matter
    first, second = initramfs.pack(one), initramfs.pack(two)
    assert first == second
    rows = listing(first)
    assert all(" root " in row for row in rows), rows
    names = [row.split()[-1] for row in rows]
    assert names == sorted(names)
    assert "." not in names  # the archive must not reset the guest's / permissions


def test_with_files_appends_an_archive_the_kernel_can_unpack(tmp_path: Path) -> None:
    base = tmp_path / "base.cpio.gz"
    stage = tmp_path / "stage"
    stage.mkdir()
    tree(stage)
    base.write_bytes(gzip.compress(initramfs.pack(stage), mtime=0))
    payload = tmp_path / "payload.bin"
    payload.write_bytes(bytes(range(256)) * 3)
    payload.chmod(0o750)
    out = initramfs.with_files(base, [(payload, "/tmp/deep/x.bin")], tmp_path / "run.img")
    data = out.read_bytes()
    assert data.startswith(base.read_bytes())
    extra = data[len(base.read_bytes()) :].lstrip(b"\0")
    assert (len(data) - len(extra)) % 4 == 0  # the kernel looks for it 4-byte aligned
    dest = tmp_path / "unpacked"
    dest.mkdir()
    extract(extra, dest)
    copied = dest / "tmp" / "deep" / "x.bin"
    assert copied.read_bytes() == payload.read_bytes()
    assert copied.stat().st_mode & 0o777 == 0o750


def test_with_no_files_is_the_base_itself(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.write_bytes(b"x")
    assert initramfs.with_files(base, [], tmp_path / "out") == base


@pytest.mark.parametrize("bad", ["relative/path", "/a/../b", "/"])
def test_guest_paths_must_be_absolute_and_plain(bad: str) -> None:
    with pytest.raises(InfraError, match="guest path"):
        initramfs.guest_path(bad)


def test_missing_put_source_is_named(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.write_bytes(b"x")
    with pytest.raises(InfraError, match="nope"):
        initramfs.with_files(base, [(tmp_path / "nope", "/x")], tmp_path / "out")
