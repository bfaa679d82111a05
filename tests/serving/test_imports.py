"""The serving package's import graph: no module imports back into itself, and the package re-exports nothing."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import model_packages.serving

PACKAGE = "model_packages.serving"
ROOT = Path(model_packages.serving.__file__).parent


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = [PACKAGE, *path.relative_to(ROOT).with_suffix("").parts]
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imported(tree: ast.AST, modules: dict[str, Path]) -> set[str]:
    """What a module imports when it runs (at import time or in a function); `if TYPE_CHECKING:` blocks
    never run. Importing `a.b.c` runs the packages `a.b` and `a` first."""
    names: set[str] = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        stack.extend(ast.iter_child_nodes(node))
    found = set()
    for name in names:
        parts = name.split(".")
        found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return found & set(modules)


def test_no_import_cycle_in_the_serving_package() -> None:
    modules = _modules()
    assert {"model_packages.serving.app", "model_packages.serving.contracts.v2"} <= set(modules)
    graph = {name: _imported(ast.parse(path.read_text()), modules) - {name} for name, path in modules.items()}
    assert "model_packages.serving.app" in graph["model_packages.serving.runtime"]  # the graph is read at all
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            cycle = [*path[path.index(name):], name]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if name in done:
            return
        for other in sorted(graph[name]):
            visit(other, [*path, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


def test_the_package_imports_nothing_of_itself() -> None:
    """`import model_packages.serving.settings` must not pull the app, numpy's users or the transport in."""
    probe = ("import sys, model_packages.serving as s\n"
             "print(sorted(m for m in sys.modules if m.startswith('model_packages.serving.')))\n"
             "print([n for n in vars(s) if not n.startswith('__')])")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.split("\n")[:2] == ["[]", "[]"]  # no submodule loaded, no name re-exported
