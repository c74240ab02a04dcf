"""The house rules that a reader relies on, checked on the tree itself (docs/architecture.md).

Imports point down only (web -> bot -> storage; bot/__main__.py is the one bot module that may
import web), the packages of bot/ import each other without circles (type-only imports under
TYPE_CHECKING aside), no module reaches 500 lines and no function 80.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("bot", "web", "storage")
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80


def _modules() -> Iterator[tuple[str, Path, ast.Module]]:
    for layer in LAYERS:
        for path in sorted((ROOT / layer).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            yield name, path, ast.parse(path.read_text(encoding="utf-8"))


def _unit(module: str) -> str:
    """The part of the tree a module belongs to: bot's packages and modules, else its layer."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "bot" else parts[0]


def _runtime_imports(tree: ast.Module) -> Iterator[str]:
    type_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for inner in ast.walk(node)
    }
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def _import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, _, tree in _modules():
        for imported in _runtime_imports(tree):
            if imported.split(".")[0] in LAYERS and _unit(imported) != _unit(name):
                graph.setdefault(_unit(name), set()).add(_unit(imported))
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in list(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_is_read_from_the_tree() -> None:
    graph = _import_graph()
    assert "storage" in graph["web"]
    assert "bot.events" in graph["web"]


def test_imports_point_down_only() -> None:
    upward = [
        (source, target)
        for source, targets in _import_graph().items()
        for target in targets
        if (source == "storage" and target != "storage")
        or (source.startswith("bot") and target == "web" and source != "bot.__main__")
    ]
    assert upward == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_packages_of_bot_import_each_other_without_circles() -> None:
    assert _cycles(_import_graph()) == []


def test_no_module_reaches_500_lines() -> None:
    sizes = {
        str(path.relative_to(ROOT)): len(path.read_text().splitlines()) for _, path, _ in _modules()
    }
    assert max(sizes.values()) > 100  # the walk saw real modules
    assert {name: lines for name, lines in sizes.items() if lines >= MAX_MODULE_LINES} == {}


def test_no_function_is_over_80_lines() -> None:
    long_functions = {}
    counted = 0
    for _, path, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                counted += 1
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long_functions[f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"] = length
    assert counted > 500
    assert long_functions == {}
