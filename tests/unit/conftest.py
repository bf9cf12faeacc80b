"""Fixtures the unit tests share."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.build import source


@pytest.fixture
def patches_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The series' directory, empty, in place of images/linux/patches/; the cache in tmp_path."""
    target = tmp_path / "patches"
    target.mkdir()
    monkeypatch.setattr(source, "PATCHES_DIR", target)
    monkeypatch.setenv("MKH_CACHE", str(tmp_path / "cache"))
    return target
