"""Multikernel overlays (INTERFACE §9): compiled with dtc -@ and checked on the host.

An overlay is one transaction: `fragment@<k>` nodes, each with a
`target-path` and an `__overlay__` node holding operations.  `check()`
applies the rules a write to /sys/fs/multikernel/overlays/new is refused
by, fragment by fragment in the kernel's order, against what the DTB
checks know (dtb.Budget: the CPUs, the free pool, the instances there).
What only the running kernel knows (an instance's state, whether its
kernel can offline memory) is left to it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import fdt

from harness.multikernel import dtb
from harness.multikernel.dtb import Budget, DtbError, Instance, Problem

INSTANCES = "/instances"
# Operations of a fragment, in the order the kernel runs them.
ORDER = (
    "instance-create",
    "memory-remove",
    "memory-add",
    "cpu-remove",
    "cpu-add",
    "instance-remove",
)
_FRAGMENT = re.compile(r"fragment@(\d+)")
_ITEM = {"cpu-add": "cpu", "cpu-remove": "cpu", "memory-add": "memory", "memory-remove": "memory"}


@dataclass(frozen=True)
class Fragment:
    index: int
    target: str
    operations: dict[str, fdt.Node]  # by name, in ORDER

    @property
    def name(self) -> str:
        return f"fragment@{self.index}"


def compile_file(path: Path) -> bytes:
    """The overlay blob of a .dts (dtc -@, its errors as FILE:LINE.COL), or a .dtbo as is."""
    data = dtb.read(path)
    return data if data[:4] == dtb.FDT_MAGIC else dtb.run_dtc(str(path), symbols=True)


def fragments(blob: bytes) -> list[Fragment]:
    """The fragments of an overlay blob, in ascending k; DtbError if it is not an overlay."""
    tree = dtb.parse_blob(blob)
    if tree.exist_node("/instances"):
        raise DtbError("a multikernel device tree, not an overlay (no /plugin/): use mkh dtb check")
    found = []
    for node in tree.root.nodes:
        if node.name.startswith("__"):  # __symbols__, __fixups__ and friends from dtc -@
            continue
        match = _FRAGMENT.fullmatch(node.name)
        if match is None:
            raise DtbError(f"{node.name}: not a fragment@<k> node")
        target = node.get_property("target-path")
        if not isinstance(target, fdt.PropStrings) or len(target.data) != 1:
            raise DtbError(f"{node.name}: no target-path string (only target-path is supported)")
        body = node.get_subnode("__overlay__")
        if body is None:
            raise DtbError(f"{node.name}: no __overlay__ node")
        unknown = [n.name for n in body.nodes if n.name not in ORDER]
        if unknown or body.props:
            what = unknown[0] if unknown else body.props[0].name
            raise DtbError(f"{node.name}: {what} is not an operation ({', '.join(ORDER)})")
        ops = {name: body.get_subnode(name) for name in ORDER if body.get_subnode(name)}
        found.append(Fragment(int(match[1]), target.data[0], ops))
    if not found:
        raise DtbError("no fragment@<k> nodes: not an overlay")
    found.sort(key=lambda f: f.index)
    return found


class _State:
    """The instances as the transaction leaves them, fragment after fragment.

    With the instances there unknown (Budget.existing None), an instance a
    fragment names is taken to exist, with CPUs and memory not known: what
    needs them is not checked.
    """

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.known = budget.existing is not None
        self.instances = {inst.name: inst for inst in budget.existing or []}
        self.unknown: set[str] = set()
        self.free = budget.pool_free

    def exists(self, name: str) -> bool:
        if name not in self.instances and not self.known:
            self.instances[name] = Instance(name, 0, (), 0)
            self.unknown.add(name)
        return name in self.instances

    def others(self, name: str) -> list[Instance]:
        return [inst for inst in self.instances.values() if inst.name != name]


def check(blob: bytes, budget: Budget | None = None) -> list[Problem]:
    """Why the kernel would refuse the overlay: the first problem, as it stops there.

    An empty list: it would apply (as far as `budget` tells).  Raises
    DtbError when the blob is not an overlay at all.
    """
    state = _State(budget or Budget())
    for frag in fragments(blob):
        problem = _fragment(frag, state)
        if problem is not None:
            return [problem]
    return []


def _fail(frag: Fragment, errno: str, message: str, hint: str = "") -> Problem:
    return Problem(f"{frag.name} ({frag.target})", errno, message, hint, where="overlay")


def _fragment(frag: Fragment, state: _State) -> Problem | None:
    if frag.target == "/resources":
        return _fail(frag, "EPERM", "the pool is fixed at boot", "resize instances instead")
    if frag.target == INSTANCES:
        return _on_instances(frag, state)
    name = frag.target.removeprefix(f"{INSTANCES}/")
    if not frag.target.startswith(f"{INSTANCES}/") or "/" in name:
        return _fail(frag, "EINVAL", f"target-path {frag.target!r} is not /instances[/NAME]")
    if not state.exists(name):
        return _fail(frag, "ENOENT", f"no instance {name}", "create it first (instance-create)")
    for op in ORDER:
        node = frag.operations.get(op)
        if node is None:
            continue
        if op in ("instance-create", "instance-remove"):
            return _fail(frag, "EINVAL", f"{op} targets /instances, not {frag.target}")
        try:
            problem = _resource_op(frag, op, node, name, state)
        except DtbError as exc:
            return _fail(frag, "EINVAL", f"{op}: {exc}")
        if problem is not None:
            return problem
    return None


def _on_instances(frag: Fragment, state: _State) -> Problem | None:
    for op in frag.operations:
        if op not in ("instance-create", "instance-remove"):
            return _fail(frag, "EINVAL", f"{op} targets /instances/NAME, not /instances")
    create = frag.operations.get("instance-create")
    if create is not None:
        problem = _create(frag, create, state)
        if problem is not None:
            return problem
    remove = frag.operations.get("instance-remove")
    if remove is not None:
        name = _string(remove, "instance-name")
        if name is None:
            return _fail(frag, "EINVAL", "instance-remove: no instance-name string")
        if not state.exists(name):
            return _fail(frag, "ENOENT", f"instance-remove: no instance {name}")
        gone = state.instances.pop(name)
        if state.free is not None and name not in state.unknown:
            state.free += gone.memory
    return None


def _create(frag: Fragment, node: fdt.Node, state: _State) -> Problem | None:
    name = _string(node, "instance-name")
    if name is None:
        return _fail(frag, "EINVAL", "instance-create: no instance-name string")
    ids = node.get_property("id")
    taken = {inst.id for inst in state.instances.values()}
    free_id = next(i for i in range(1, dtb.MAX_ID + 2) if i not in taken)
    # The same rules as an upload: built as the DTB it would be, then dtb.check().
    shaped = fdt.Node(name)
    shaped.append(ids if ids is not None else fdt.PropWords("id", free_id))
    resources = node.get_subnode("resources")
    if resources is not None:
        shaped.append(resources)
    tree = fdt.FDT()
    tree.set_property("compatible", dtb.COMPATIBLE)
    parent = fdt.Node("instances")
    parent.append(shaped)
    tree.add_item(parent)
    blob = bytes(tree.to_dtb(version=17))
    budget = replace(state.budget, pool_free=state.free, existing=list(state.instances.values()))
    try:
        problems = dtb.check(blob, budget)
    except DtbError as exc:
        return _fail(frag, "EINVAL", f"instance-create: {exc}")
    if problems:
        first = problems[0]
        return _fail(frag, first.errno, f"instance-create {name}: {first.message}", first.hint)
    [created] = dtb.parse(blob)[0]
    state.instances[name] = created
    if state.free is not None:
        state.free -= created.memory
    return None


def _string(node: fdt.Node, name: str) -> str | None:
    prop = node.get_property(name)
    if isinstance(prop, fdt.PropStrings) and len(prop.data) == 1:
        return str(prop.data[0])
    return None


def _items(node: fdt.Node, op: str) -> list[fdt.Node]:
    kind = _ITEM[op]
    items: list[fdt.Node] = list(node.nodes)
    if not items:
        raise DtbError(f"no {kind}@<n> items")
    for item in items:
        if not re.fullmatch(rf"{kind}@[0-9a-f]+", item.name):
            raise DtbError(f"{item.name} is not a {kind}@<n> item")
    return items


def _cells(item: fdt.Node, name: str, counts: tuple[int, ...]) -> list[int]:
    prop = item.get_property(name)
    if not isinstance(prop, fdt.PropWords) or len(prop.data) not in counts:
        want = " or ".join(str(c) for c in counts)
        raise DtbError(f"{item.name}: {name} missing or not {want} cells")
    return list(prop.data)


def _resource_op(
    frag: Fragment, op: str, node: fdt.Node, name: str, state: _State
) -> Problem | None:
    inst = state.instances[name]
    known = name not in state.unknown
    cpus = list(inst.cpus)
    memory = inst.memory
    for item in _items(node, op):
        if op in ("cpu-add", "cpu-remove"):
            [cpu] = _cells(item, "reg", (1,))
            if op == "cpu-remove":
                if not known:
                    continue
                if cpu not in cpus:
                    return _fail(frag, "EINVAL", f"cpu-remove: CPU {cpu} is not {name}'s")
                if cpu == inst.cpus[0]:
                    return _fail(frag, "EBUSY", f"cpu-remove: CPU {cpu} is {name}'s first CPU")
                cpus.remove(cpu)
                continue
            problem = _cpu_free(frag, cpu, name, cpus, state)
            if problem is not None:
                return problem
            cpus.append(cpu)
        elif op == "memory-add":
            cells = _cells(item, "size", (1, 2))
            size = cells[0] if len(cells) == 1 else (cells[0] << 32) | cells[1]
            if not size or size % dtb.PAGE_SIZE:
                raise DtbError(f"{item.name}: size {size:#x} is not a multiple of 4096")
            if state.free is not None:
                if size > state.free:
                    return _fail(
                        frag, "ENOSPC", f"memory-add: {size} bytes, the pool has {state.free}"
                    )
                state.free -= size
            memory += size
        else:
            hi, lo, size_hi, size_lo = _cells(item, "reg", (4,))
            size = (size_hi << 32) | size_lo
            if not size or ((hi << 32) | lo) % dtb.PAGE_SIZE or size % dtb.PAGE_SIZE:
                raise DtbError(f"{item.name}: reg is not a page-aligned range")
            if known and size >= memory:
                return _fail(frag, "EBUSY", f"memory-remove: {name} would have no memory left")
            memory -= size
            if state.free is not None:
                state.free += size
    state.instances[name] = replace(inst, cpus=tuple(cpus), memory=memory)
    return None


def _cpu_free(
    frag: Fragment, cpu: int, name: str, cpus: list[int], state: _State
) -> Problem | None:
    if cpu == 0:
        return _fail(frag, "EINVAL", "cpu-add: CPU 0 cannot be taken offline")
    limit = state.budget.cpus
    if limit is not None and cpu >= limit:
        return _fail(frag, "EINVAL", f"cpu-add: CPU {cpu} does not exist", f"CPUs 0-{limit - 1}")
    if cpu in cpus:
        return _fail(frag, "EINVAL", f"cpu-add: CPU {cpu} is {name}'s already")
    owner = next((i.name for i in state.others(name) if cpu in i.cpus), None)
    if owner is not None:
        return _fail(frag, "EBUSY", f"cpu-add: CPU {cpu} belongs to {owner}")
    return None


# Overlay source, for tests and scripts that write overlays as code.


def compile_dts(text: str) -> bytes:
    """Overlay source compiled as `mkh dtb overlay` compiles it (dtc -@)."""
    return dtb.run_dtc("-", text.encode(), symbols=True)


def source(*fragments: str) -> str:
    """An overlay of these fragments, numbered by dtc in this order."""
    return "/dts-v1/;\n/plugin/;\n\n" + "\n".join(fragments)


def fragment(target: str, *operations: str) -> str:
    """One fragment: its target-path and its operations."""
    body = "".join(f"\t{line}\n" for op in operations for line in op.splitlines())
    return f"&{{{target}}} {{\n{body}}};\n"


def create(name: str, cpus: tuple[int, ...], memory: int, mk_id: int | None = None) -> str:
    """instance-create (target /instances); without mk_id the kernel picks the lowest free id."""
    ident = "" if mk_id is None else f"\tid = <{mk_id}>;\n"
    cells = " ".join(str(cpu) for cpu in cpus)
    return (
        f'instance-create {{\n\tinstance-name = "{name}";\n{ident}'
        f"\tresources {{\n\t\tcpus = <{cells}>;\n"
        f"\t\tmemory-bytes = <{_pair(memory)}>;\n\t}};\n}};"
    )


def remove(name: str) -> str:
    """instance-remove (for target /instances)."""
    return f'instance-remove {{\n\tinstance-name = "{name}";\n}};'


def cpu_op(operation: str, *cpus: int) -> str:
    """cpu-add or cpu-remove of these host CPUs."""
    items = "".join(f"\tcpu@{i} {{ reg = <{cpu}>; }};\n" for i, cpu in enumerate(cpus))
    return f"{operation} {{\n{items}}};"


def memory_add(*sizes: int) -> str:
    """memory-add: one range of each size, the pool picks where."""
    items = "".join(
        f"\tmemory@{i} {{ size = <{_pair(size)}>; }};\n" for i, size in enumerate(sizes)
    )
    return f"memory-add {{\n{items}}};"


def memory_remove(*ranges: tuple[int, int]) -> str:
    """memory-remove of ranges (start, size) an earlier memory-add gave."""
    items = "".join(
        f"\tmemory@{i} {{ reg = <{_pair(start)} {_pair(size)}>; }};\n"
        for i, (start, size) in enumerate(ranges)
    )
    return f"memory-remove {{\n{items}}};"


def _pair(value: int) -> str:
    return f"{value >> 32:#x} {value & 0xFFFFFFFF:#x}"
