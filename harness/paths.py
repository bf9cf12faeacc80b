"""Where the harness keeps its inputs (in the repository) and caches (outside it)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GUEST_DIR = REPO / "guest"
IMAGES_DIR = REPO / "images"
LINUX_RECIPE_DIR = IMAGES_DIR / "linux"
PATCHES_DIR = LINUX_RECIPE_DIR / "patches"


def cache_root() -> Path:
    """The cache directory: $MKH_CACHE, else $XDG_CACHE_HOME/mkh, else ~/.cache/mkh."""
    explicit = os.environ.get("MKH_CACHE")
    if explicit:
        return Path(explicit).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return (base / "mkh").resolve()


def cache_dir(*parts: str) -> Path:
    """A subdirectory of the cache, created on demand."""
    path = cache_root().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
