"""Cache files appear complete or not at all, even when producing them fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.build import initramfs
from harness.core import atomic
from harness.core.errors import InfraError


class Boom(Exception):
    pass


def test_a_failed_file_write_leaves_the_old_file_and_nothing_else(tmp_path: Path) -> None:
    target = tmp_path / "entry"
    target.write_bytes(b"old")
    with pytest.raises(Boom), atomic.new_file(target) as scratch:
        scratch.write_bytes(b"half of the new")
        raise Boom
    assert [p.name for p in tmp_path.iterdir()] == ["entry"]
    assert target.read_bytes() == b"old"
    atomic.write_bytes(target, b"new")
    assert [p.name for p in tmp_path.iterdir()] == ["entry"]
    assert target.read_bytes() == b"new"
    assert target.stat().st_mode & 0o777 == 0o644


def test_a_failed_directory_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "kernel-x"
    with pytest.raises(Boom), atomic.new_dir(target) as scratch:
        (scratch / "bzImage").write_bytes(b"half")
        raise Boom
    assert list(tmp_path.iterdir()) == []
    with atomic.new_dir(target) as scratch:
        (scratch / "bzImage").write_bytes(b"whole")
    assert [p.name for p in tmp_path.iterdir()] == ["kernel-x"]
    assert (target / "bzImage").read_bytes() == b"whole"


def test_a_failed_boot_image_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MKH_CACHE", str(tmp_path / "cache"))
    base, kernel = tmp_path / "initramfs-k.cpio.gz", tmp_path / "bzImage"
    base.write_bytes(b"base")
    kernel.write_bytes(b"kernel")

    def half_written(base: Path, files: object, out: Path) -> Path:
        out.write_bytes(b"half an archive")
        raise InfraError("cpio failed")

    monkeypatch.setattr(initramfs, "with_files", half_written)
    with pytest.raises(InfraError):
        initramfs.with_boot_files(base, kernel)
    assert list((tmp_path / "cache" / "images").iterdir()) == []
