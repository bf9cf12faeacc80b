"""Locks between mkh processes sharing a cache: flock(2) on small files.

A lock is held by an open file, so it goes away with the process that held
it, however that process ends.  Cache entries, the shared kernel source tree
and build directories each have one; their lock files live in the cache's
`locks/` directory (run directories keep theirs inside, see artifacts.py).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.core.paths import cache_dir
from harness.core.progress import note


def lock_file(path: Path) -> Path:
    """The lock file guarding `path` (a cache entry, a tree, a build directory)."""
    digest = hashlib.sha256(os.fsencode(path.resolve())).hexdigest()[:12]
    return cache_dir("locks") / f"{path.name}-{digest}.lock"


def acquire(file: Path, what: str, shared: bool = False) -> int:
    """Lock `file` (created if needed) and return the open descriptor that holds the lock.

    When another process holds it, tell the user once what we wait for, then wait.
    """
    fd = os.open(file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    try:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            note(f"waiting for {what}: another mkh process is using it")
            fcntl.flock(fd, mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


def is_locked(file: Path) -> bool:
    """Whether some open file holds a lock on `file` (False when there is no such file)."""
    try:
        fd = os.open(file, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@contextmanager
def locked(path: Path, what: str, shared: bool = False) -> Iterator[None]:
    """Hold the lock guarding `path` for the body: exclusive, or shared with other readers."""
    fd = acquire(lock_file(path), what, shared)
    try:
        yield
    finally:
        os.close(fd)
