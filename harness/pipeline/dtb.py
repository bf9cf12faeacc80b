"""`mkh dtb compile|check|show|overlay FILE` from its request: checked, then written or shown.

A file that does not compile, or is not a multikernel DTB at all, is one
problem like the others the kernel would refuse it for: nothing is
written or shown then.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from harness.multikernel import dtb, overlay


@dataclass(frozen=True)
class DtbRequest:
    action: str  # compile, check, show or overlay
    file: Path  # a .dts file, or a .dtb (a .dtbo for overlay)
    budget: dtb.Budget = field(default_factory=dtb.Budget)  # what the file is checked against
    output: Path | None = None  # compile, overlay: where it goes; None: FILE.dtb, FILE.dtbo


@dataclass(frozen=True)
class DtbReport:
    problems: list[str]  # why the kernel would refuse the file; none: it would take it
    written: Path | None = None  # compile, overlay: the blob, written only without problems
    # show: each instance's name and its device_tree_source, as the kernel shows it
    sources: list[tuple[str, str]] = field(default_factory=list)


def device_tree(request: DtbRequest) -> DtbReport:
    """Check the file as the kernel would; compile it to a DTB or a DTBO, or show its instances."""
    overlaid = request.action == "overlay"
    try:
        if overlaid:
            blob = overlay.compile_file(request.file)
            problems = [str(p) for p in overlay.check(blob, request.budget)]
        else:
            blob = dtb.load(request.file)
            problems = [str(p) for p in dtb.check(blob, request.budget)]
    except dtb.DtsError as exc:
        return DtbReport([str(exc)])
    except dtb.DtbError as exc:
        return DtbReport([f"{request.file}: {exc} (EINVAL)"])
    if request.action in ("compile", "overlay"):
        if problems:
            return DtbReport(problems)
        out = request.output or request.file.with_suffix(".dtbo" if overlaid else ".dtb")
        out.write_bytes(blob)
        return DtbReport([], written=out)
    if request.action == "show":
        shown = [(inst.name, dtb.instance_dts(inst)) for inst in dtb.parse(blob)[0]]
        return DtbReport(problems, sources=shown)
    return DtbReport(problems)
