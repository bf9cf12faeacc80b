"""The coverage build's notes: each profiled object's .gcno and its source, kept with the image.

gcc writes a .gcno next to every object it profiles (the coverage build
profiles only the multikernel code, images/linux/coverage/); lcov reads it
with the counts a kernel gives.  The build keeps the notes, and the source
files they describe, in a directory of its own that the cached image
carries, so a report does not depend on the build directory or on the
tree as they are later.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from harness.core.errors import InfraError

CONFIG_LINE = "CONFIG_GCOV_KERNEL=y"
# In a build directory, and next to a cached bzImage.
BUILD_NOTES = "mkh-gcov"
IMAGE_NOTES = "gcov"
OBJTREE = "objtree"


def profiled(config: Path | None) -> bool:
    """Whether a kernel of this config keeps gcov counts (the coverage build)."""
    return config is not None and CONFIG_LINE in config.read_text().splitlines()


def keep(build: Path, tree: Path) -> Path:
    """Copy every .gcno under `build` and the C file it belongs to into build/mkh-gcov.

    Returns that directory: notes/<path>.gcno, source/<path>.c, and the
    file objtree, the build directory the kernel names its counts under.
    """
    dest = build / BUILD_NOTES
    shutil.rmtree(dest, ignore_errors=True)
    kept = 0
    for note in sorted(build.rglob("*.gcno")):
        rel = note.relative_to(build)
        source = tree / rel.with_suffix(".c")
        if rel.parts[0] == BUILD_NOTES or not source.is_file():
            continue
        for original, copy in ((note, dest / "notes" / rel), (source, dest / "source" / rel)):
            copy = copy.with_suffix(original.suffix)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(original, copy)
        kept += 1
    if not kept:
        raise InfraError(
            f"the coverage build of {tree} profiled no file: its multikernel code has no "
            "CONFIG_GCOV_PROFILE_MULTIKERNEL (the series' gcov patch)"
        )
    (dest / OBJTREE).write_text(f"{build.resolve()}\n")
    return dest


def notes(bzimage: Path) -> Path | None:
    """The notes of a coverage kernel: next to the cached image, or in its build directory."""
    places = [bzimage.parent / IMAGE_NOTES]
    if bzimage.parent.name == "boot" and len(bzimage.parents) > 3:
        places.append(bzimage.parents[3] / BUILD_NOTES)  # <build>/arch/x86/boot/bzImage
    return next((p for p in places if (p / "notes").is_dir()), None)
