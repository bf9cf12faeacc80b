"""The packages of the harness form layers: each imports only from itself and those below.

core < build < target < multikernel < bench < report < pipeline < cli.  The
build side never imports the target side, and no module imports, however
indirectly, a module that imports it.
"""

from __future__ import annotations

import ast
from pathlib import Path

from harness.core.paths import REPO

LAYERS = ["core", "build", "target", "multikernel", "bench", "report", "pipeline", "cli"]
HARNESS = REPO / "harness"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """Each harness module and the harness modules it imports (at any depth of its code)."""
    found: dict[str, set[str]] = {}
    modules = {module_name(p): p for p in HARNESS.rglob("*.py")}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, *([node.module] if node.module else [])])
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    targets.add(full if full in modules else base)
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
        found[name] = {t for t in targets if t in modules and t != name}
    return found


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else -1


def test_every_module_is_in_a_layer() -> None:
    outside = [m for m in imports() if m != "harness" and layer(m) < 0]
    assert outside == []


def test_no_module_imports_from_a_higher_layer() -> None:
    upward = [
        f"{module} imports {target}"
        for module, targets in imports().items()
        for target in targets
        if layer(target) > layer(module)
    ]
    assert upward == []


def test_no_import_cycle() -> None:
    graph = imports()
    cycles: list[str] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []
