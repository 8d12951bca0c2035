"""The package tree is the pipeline: every import in lungforge/ points down a stage, never up or
sideways, and no module's imports close a circle (docs/architecture.md lists the stages)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lungforge"

STAGES = {
    "core": 0,
    "luna16": 1,
    "store": 2,
    "phantom": 2,
    "models": 2,
    "diffusion": 2,
    "preparation": 3,
    "data": 3,
    "training": 4,
    "export": 4,
    "view": 4,
    "augment": 5,
    "bench": 6,
    "demo": 7,
    "cli": 8,
    "__main__": 9,
    "__init__": 9,
}
"""Top-level package or module of lungforge → its stage; a module imports only lower stages."""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """Module → the lungforge modules it imports (a `from package import name` counts as the package's module)."""
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    found: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        source = module_name(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lungforge"):
                names = [f"{node.module}.{alias.name}" for alias in node.names]
                found[source] |= {n if n in modules else node.module for n in names}
            elif isinstance(node, ast.Import):
                found[source] |= {a.name for a in node.names if a.name.startswith("lungforge")}
    return found


def test_every_top_level_package_has_a_stage() -> None:
    tops = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir() if p.suffix == ".py" or (p / "__init__.py").is_file()}
    assert tops == set(STAGES)


def test_imports_point_down_the_stages() -> None:
    upward = []
    for source, targets in imports().items():
        top = source.split(".")[1] if "." in source else "__init__"
        for target in targets:
            other = target.split(".")[1] if "." in target else "__init__"
            if other != top and STAGES[other] >= STAGES[top]:
                upward.append(f"{source} imports {target}")
    assert upward == []


def test_no_import_circle() -> None:
    graph = imports()
    state: dict[str, int] = {}
    circles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                circles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert circles == []
