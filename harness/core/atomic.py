"""Atomic creation of cache files and directories.

Everything is produced under a unique temporary name in the target's own
directory and renamed into place only when complete, so readers see either
nothing or the finished entry, and two writers never share a scratch name.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def new_file(target: Path, mode: int = 0o644) -> Iterator[Path]:
    """A temporary path that replaces `target` when the body succeeds; removed if it fails."""
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    scratch = Path(name)
    try:
        yield scratch
        scratch.chmod(mode)
        os.replace(scratch, target)
    except BaseException:
        scratch.unlink(missing_ok=True)
        raise


@contextmanager
def new_dir(target: Path) -> Iterator[Path]:
    """A temporary directory that becomes `target` when the body succeeds; removed if it fails.

    `target` must not exist (or be an empty directory) by then.
    """
    scratch = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        yield scratch
        scratch.chmod(0o755)
        os.replace(scratch, target)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise


def write_bytes(target: Path, data: bytes) -> None:
    with new_file(target) as scratch:
        scratch.write_bytes(data)
