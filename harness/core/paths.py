"""Where the harness keeps its inputs (in the repository) and caches (outside it)."""

from __future__ import annotations

import os
from pathlib import Path

from harness.core.errors import InfraError

REPO = Path(__file__).resolve().parents[2]
GUEST_DIR = REPO / "guest"
IMAGES_DIR = REPO / "images"
LINUX_RECIPE_DIR = IMAGES_DIR / "linux"
PATCHES_DIR = LINUX_RECIPE_DIR / "patches"
# Variants of the build, each a directory of fragments under images/linux/:
# "debug" (KASAN, lockdep; --debug-kernel) and "coverage" (gcov; mkh coverage).
VARIANTS = ("debug", "coverage")
# The multikernel device tree of the series' usage.rst: web-server and database.
EXAMPLE_DTS = IMAGES_DIR / "multikernel" / "example.dts"


def cache_root() -> Path:
    """The cache directory: $MKH_CACHE, else $XDG_CACHE_HOME/mkh, else ~/.cache/mkh."""
    explicit = os.environ.get("MKH_CACHE")
    if explicit:
        return Path(explicit).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return (base / "mkh").resolve()


def cache_dir(*parts: str) -> Path:
    """A subdirectory of the cache, created on demand; InfraError naming it if unusable."""
    path = cache_root().joinpath(*parts)
    hint = "set MKH_CACHE to a writable directory"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InfraError(f"cannot create cache directory {path}: {exc.strerror}; {hint}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise InfraError(f"cache directory {path} is not writable; {hint}")
    return path
