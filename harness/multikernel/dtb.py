"""Multikernel device trees: build, compile, read and validate them on the host.

DTBs are built from a Python description with the `fdt` package, DTS text is
compiled with `dtc`, and `check()` applies the kernel's validation rules
(INTERFACE §3) so a mistake is reported, with the instance's name and a hint,
before any guest boots.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import fdt

from harness.core.errors import HarnessError, InfraError

COMPATIBLE = "multikernel-v1"
FDT_MAGIC = b"\xd0\x0d\xfe\xed"
MAX_ID = 2047
PAGE_SIZE = 4096
# The least memory the kernel gives an instance (its shared areas come off the top).
MIN_MEMORY = 1 << 20
# Instance names: device-tree node-name characters, at most 31, not . or ..
NAME_MAX = 31
_NAME = re.compile(rf"[0-9A-Za-z,._+@-]{{1,{NAME_MAX}}}")


class DtbError(HarnessError, ValueError):
    """A blob that is not a multikernel device tree at all (the kernel's EINVAL)."""


class DtsError(HarnessError, ValueError):
    """dtc refused DTS source; the message carries its FILE:LINE.COL positions."""


@dataclass(frozen=True)
class Instance:
    name: str
    id: int
    cpus: tuple[int, ...]
    memory: int  # bytes


@dataclass(frozen=True)
class Problem:
    """One reason the kernel would refuse a DTB, and the errno it would return."""

    instance: str  # the instance, or an overlay's fragment
    errno: str
    message: str
    hint: str = ""
    where: str = "instance"

    def __str__(self) -> str:
        text = f"{self.where} {self.instance}: {self.message} ({self.errno})"
        return f"{text}; {self.hint}" if self.hint else text


@dataclass
class Budget:
    """What the DTB is checked against: the guest's CPUs, pool and existing instances.

    None: not known (not checked).
    """

    cpus: int | None = None
    pool_free: int | None = None
    existing: list[Instance] | None = None


def _memory_cells(size: int) -> list[int]:
    return [size] if size < 1 << 32 else [size >> 32, size & 0xFFFFFFFF]


def to_dtb(instances: list[Instance]) -> bytes:
    """A multikernel DTB describing `instances` (not validated: see check())."""
    tree = fdt.FDT()
    tree.set_property("compatible", COMPATIBLE)
    parent = fdt.Node("instances")
    for inst in instances:
        node = fdt.Node(inst.name)
        node.append(fdt.PropWords("id", inst.id))
        resources = fdt.Node("resources")
        resources.append(fdt.PropWords("cpus", *inst.cpus))
        resources.append(fdt.PropWords("memory-bytes", *_memory_cells(inst.memory)))
        node.append(resources)
        parent.append(node)
    tree.add_item(parent)
    return bytes(tree.to_dtb(version=17))


# dtc's closing lines after the errors it reports, which add nothing.
_DTC_TRAILERS = ("FATAL ERROR: Unable to parse input tree", "ERROR: Input tree has errors")


def run_dtc(source: str, text: bytes | None = None, symbols: bool = False) -> bytes:
    """Run dtc on a DTS file (or "-" and `text`); DtsError with dtc's messages if it fails.

    `symbols`: dtc -@, as overlays are compiled.
    """
    flags = ["-@"] if symbols else []
    try:
        done = subprocess.run(
            ["dtc", "-q", *flags, "-I", "dts", "-O", "dtb", "-o", "-", source],
            input=text,
            capture_output=True,
            check=False,
        )
    except FileNotFoundError as exc:
        raise InfraError("dtc is missing: install device-tree-compiler") from exc
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        kept = [s.removeprefix("Error: ") for s in lines if not s.startswith(_DTC_TRAILERS)]
        raise DtsError("; ".join(kept or lines) or f"dtc failed with status {done.returncode}")
    return done.stdout


def compile_dts(text: str) -> bytes:
    """Compile DTS text with dtc; DtsError quoting dtc (as <stdin>:LINE.COL) if it fails."""
    return run_dtc("-", text.encode())


def _words(node: fdt.Node, name: str) -> list[int] | None:
    prop = node.get_property(name)
    if prop is None:
        return None
    if not isinstance(prop, fdt.PropWords):
        raise DtbError(f"{name} is not a list of 32-bit cells")
    return list(prop.data)


def parse(blob: bytes) -> tuple[list[Instance], list[Problem]]:
    """Read a multikernel DTB: its instances, and the problems that make it invalid."""
    tree = parse_blob(blob)
    compatible = tree.get_property("compatible", "/")
    if compatible is None or COMPATIBLE not in getattr(compatible, "data", []):
        overlay = any(node.name.startswith("fragment@") for node in tree.root.nodes)
        hint = " (an overlay? use mkh dtb overlay)" if overlay else ""
        raise DtbError(f'root compatible is not "{COMPATIBLE}"{hint}')
    if not tree.exist_node("/instances"):
        raise DtbError("no /instances node")
    nodes = tree.get_node("/instances").nodes
    if not nodes:
        raise DtbError("/instances is empty")
    instances, problems = [], []
    for node in nodes:
        try:
            instances.append(_instance(node))
        except DtbError as exc:
            problems.append(Problem(node.name, "EINVAL", str(exc), _hint(str(exc))))
    return instances, problems


def parse_blob(blob: bytes) -> fdt.FDT:
    """Any device tree blob; DtbError if it is not one."""
    try:
        return fdt.parse_dtb(blob)
    except Exception as exc:  # fdt raises bare Exception for bad blobs
        raise DtbError(f"not a valid device tree blob ({len(blob)} bytes): {exc}") from exc


def _instance(node: fdt.Node) -> Instance:
    if not _NAME.fullmatch(node.name) or node.name in (".", ".."):
        raise DtbError(
            f"name {node.name!r} is not 1-{NAME_MAX} of a-z A-Z 0-9 , . _ + - @ (nor . or ..)"
        )
    ids = _words(node, "id")
    if ids is None or len(ids) != 1:
        raise DtbError("id missing or not one cell")
    if not 1 <= ids[0] <= MAX_ID:
        raise DtbError(f"id {ids[0]} outside 1..{MAX_ID}")
    resources = node.get_subnode("resources")
    if resources is None:
        raise DtbError("no resources node")
    cpus = _words(resources, "cpus")
    if not cpus:
        raise DtbError("resources/cpus missing or malformed")
    if len(set(cpus)) != len(cpus):
        raise DtbError("a CPU is listed twice")
    memory = _words(resources, "memory-bytes")
    if memory is None or len(memory) not in (1, 2):
        raise DtbError("resources/memory-bytes missing or not 1 or 2 cells")
    size = memory[0] if len(memory) == 1 else (memory[0] << 32) | memory[1]
    if size == 0 or size % PAGE_SIZE:
        raise DtbError(f"memory-bytes {size:#x} is not a non-zero multiple of {PAGE_SIZE}")
    if size < MIN_MEMORY:
        raise DtbError(f"memory-bytes {size:#x} is below the minimum of {MIN_MEMORY:#x}")
    return Instance(node.name, ids[0], tuple(cpus), size)


def _hint(message: str) -> str:
    hints = {
        "minimum": f"give the instance at least {MIN_MEMORY >> 20} MiB",
        "memory-bytes": f"use a multiple of {PAGE_SIZE} bytes",
        "id ": f"ids run from 1 to {MAX_ID}",
        "cpus": "list logical CPU numbers, e.g. cpus = <1>;",
        "name ": "rename the node, e.g. web-server",
    }
    return next((hint for key, hint in hints.items() if key in message), "")


def check(blob: bytes, budget: Budget | None = None) -> list[Problem]:
    """Every reason the kernel would refuse `blob`, in the order it would find them.

    An empty list means the kernel accepts it (as far as `budget` tells).
    Raises DtbError when the blob is not a multikernel DTB at all.
    """
    budget = budget or Budget()
    instances, problems = parse(blob)
    seen: list[Instance] = []
    for inst in instances:
        for cpu in inst.cpus:
            if cpu == 0:
                problems.append(
                    Problem(
                        inst.name,
                        "EINVAL",
                        "CPU 0 cannot be taken offline",
                        "the boot CPU stays with the host; give instances CPUs from 1 up",
                    )
                )
            elif budget.cpus is not None and cpu >= budget.cpus:
                problems.append(
                    Problem(
                        inst.name,
                        "EINVAL",
                        f"CPU {cpu} does not exist",
                        f"the machine has CPUs 0-{budget.cpus - 1}",
                    )
                )
        for other in seen:
            problems.extend(_conflicts(inst, other, "in this DTB"))
        for other in budget.existing or []:
            problems.extend(_conflicts(inst, other, "already created"))
        seen.append(inst)
    if budget.pool_free is not None:
        free = budget.pool_free
        for inst in instances:
            if inst.memory > free:
                problems.append(
                    Problem(
                        inst.name,
                        "ENOSPC",
                        f"needs {inst.memory} bytes, the pool has {free} free",
                        "boot with a larger mkkernel_pool= or ask for less memory-bytes",
                    )
                )
            free -= min(free, inst.memory)
    return problems


def _conflicts(inst: Instance, other: Instance, where: str) -> list[Problem]:
    found = []
    if inst.name == other.name:
        found.append(
            Problem(
                inst.name, "EEXIST", f"name used twice ({where})", "remove the old instance first"
            )
        )
    if inst.id == other.id:
        found.append(
            Problem(
                inst.name,
                "EEXIST",
                f"id {inst.id} also used by {other.name} ({where})",
                "pick a free id",
            )
        )
    shared = sorted(set(inst.cpus) & set(other.cpus))
    if shared:
        found.append(
            Problem(
                inst.name,
                "EBUSY",
                f"CPU {shared[0]} also assigned to {other.name} ({where})",
                "give each instance its own CPUs",
            )
        )
    return found


def _human(size: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} bytes"


def instance_dts(inst: Instance) -> str:
    """The instance as the kernel shows it in device_tree_source."""
    cells = _memory_cells(inst.memory)
    memory = f"0x{cells[0]:x}" if len(cells) == 1 else f"0x{cells[0]:x} 0x{cells[1]:08x}"
    cpus = " ".join(str(cpu) for cpu in sorted(inst.cpus))
    return (
        f"/dts-v1/;\n\n/{inst.name} {{\n"
        f'    compatible = "{COMPATIBLE}";\n'
        f"    id = <{inst.id}>;\n"
        f"    resources {{\n"
        f"        cpus = <{cpus}>;\n"
        f"        memory-bytes = <{memory}>; // {_human(inst.memory)}\n"
        f"    }};\n}};\n"
    )


def load(path: Path) -> bytes:
    """A DTB from a .dtb file, or compiled from any other (DTS) file.

    dtc reads the file itself, so its errors name it and /include/ works.
    """
    data = read(path)
    return data if data[:4] == FDT_MAGIC else run_dtc(str(path))


def read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InfraError(f"cannot read {path}: {exc.strerror}") from exc
