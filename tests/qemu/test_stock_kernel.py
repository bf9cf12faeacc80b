"""A kernel tree without the series (a stock --kernel-tree) still builds and boots."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import MKH, stock_tree

pytestmark = [pytest.mark.qemu, pytest.mark.own_kernel]


def test_stock_tree_builds_without_the_series_and_boots() -> None:
    tree = stock_tree()
    assert not (tree / "kernel" / "multikernel").exists()

    done = subprocess.run(
        [
            *MKH,
            "run",
            "--kernel-tree",
            str(tree),
            "--",
            "uname -r; test -e /sys/fs/multikernel || echo no-multikernel; nproc",
        ],
        capture_output=True,
        text=True,
        timeout=3000,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for frag, needs in (
        ("multikernel-debug.config", "kernel/multikernel/debug.c"),
        ("multikernel.config", "kernel/multikernel/Kconfig"),
    ):
        assert f"has no {needs}; not applying {frag}" in done.stderr
    lines = done.stdout.split()
    assert lines[0].startswith("6.12") and lines[1:] == ["no-multikernel", "4"]
