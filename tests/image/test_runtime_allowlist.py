"""The image runtime is an allow-list (context.RUNTIME_FILES), checked against the imports of the image's
entry points: a new module cannot land in images unseen, nor be missing from them, and nothing in them
imports a package the image locks lack (typer, rich, docker...). Static (ast): no Docker, no imports."""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import model_packages
from model_packages.image import context, locks

SRC = Path(model_packages.__file__).parent
SERVING_FLAVORS = ("sklearn", "onnx", "xgboost", "lightgbm")
# Third-party modules runtime files import although no image lock has them, each with its reason.
NOT_IN_IMAGES = {
    "onnx": "serving/tensors.py reads an ONNX graph when a package is made (package.py), never when serving",
}


@dataclass(frozen=True)
class Import:
    module: str  # absolute dotted name (for `from X import y`: X.y too, in case y is a submodule)
    top_level: bool  # runs at import time (not inside a function)
    guarded: bool  # inside `try: ... except ImportError` (the code copes without it)


def _imports(path: Path, module: str) -> list[Import]:
    """Every import `path` executes (TYPE_CHECKING blocks left out), relative ones made absolute."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, top: bool, guarded: bool) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child, top, guarded)
            return
        if isinstance(node, ast.Import):
            found.extend(Import(a.name, top, guarded) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            found.append(Import(base, top, guarded))
            found.extend(Import(f"{base}.{a.name}", top, guarded) for a in node.names)
        if isinstance(node, ast.Try):
            catches = {ast.unparse(h.type) if h.type else "" for h in node.handlers}
            copes = bool(catches & {"ImportError", "ModuleNotFoundError", "Exception", ""}) or any(
                "ImportError" in c for c in catches)
            for child in node.body:
                visit(child, top, guarded or copes)
            for child in [*node.handlers, *node.orelse, *node.finalbody]:
                visit(child, top, guarded)
            return
        inner = top and not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        for child in ast.iter_child_nodes(node):
            visit(child, inner, guarded)

    visit(ast.parse(path.read_text()), True, False)
    return found


def _file(module: str) -> Path | None:
    """The file of a `model_packages` module (None: not a module, e.g. a class imported by name)."""
    rel = Path(*module.split(".")[1:])
    for path in (SRC / rel / "__init__.py", (SRC / rel).with_suffix(".py")):
        if path.is_file():
            return path
    return None


def _closure(entry_points: tuple[str, ...]) -> dict[str, Path]:
    """The `model_packages` modules `python -m ENTRY` can import (lazy imports included), by name."""
    seen: dict[str, Path] = {}
    todo = [f"{e}.__main__" for e in entry_points]
    while todo:
        module = todo.pop()
        path = _file(module)
        if module in seen or path is None:
            continue
        seen[module] = path
        parts = module.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # importing a.b.c runs a and a.b
        todo += [i.module for i in _imports(path, module) if i.module.split(".")[0] == "model_packages"]
    return seen


def _rel(path: Path) -> str:
    return path.relative_to(SRC).as_posix()


@functools.cache
def _lock_keys(common: bool) -> frozenset[str]:
    """Distributions in every serving lock (`common`), or in some, of both architectures."""
    keys = [{p.key for p in locks.read_lock(locks.lock_path(f, arch))} for f in SERVING_FLAVORS
            for arch in ("amd64", "arm64")]
    return frozenset(set.intersection(*keys) if common else set.union(*keys))


@functools.cache
def _distributions(top: str) -> frozenset[str]:
    found = importlib.metadata.packages_distributions().get(top) or [top]
    return frozenset(locks.normalize(d) for d in found)


def _problems(path: Path, module: str) -> list[str]:
    """Module-level imports must be in every serving lock (a flavor adds only its framework, imported
    lazily); lazy ones in some serving lock; except imports guarded by `except ImportError` and the
    modules NOT_IN_IMAGES names."""
    problems = []
    for imp in _imports(path, module):
        top = imp.module.split(".")[0]
        if top in sys.stdlib_module_names or top in ("__future__", "model_packages") or imp.guarded:
            continue
        if imp.top_level and not _distributions(top) & _lock_keys(True):
            problems.append(f"imports {top} at module level; not in every serving lock")
        elif not _distributions(top) & _lock_keys(False) and top not in NOT_IN_IMAGES:
            problems.append(f"imports {top}, which no image lock has")
    return problems


def test_the_image_runtime_is_exactly_what_its_entry_points_import() -> None:
    reached = {_rel(p) for p in _closure(context.IMAGE_ENTRYPOINTS).values()}
    listed = set(context.RUNTIME_FILES) - {"py.typed"}
    assert not reached - listed, (f"the image entry points import {sorted(reached - listed)}, which images lack: "
                                  "add them to model_packages/image/context.py RUNTIME_FILES")
    assert not listed - reached, (f"RUNTIME_FILES ships {sorted(listed - reached)}, which no image entry point "
                                  "imports: drop them")
    shipped = {_rel(p) for p in context.runtime_files(SRC)}
    assert shipped == set(context.RUNTIME_FILES)
    for left_out in ("cli.py", "image/commands.py", "ci/commands.py", "batch/commands.py", "serving/asgi.py",
                     "package.py", "mlflow_import.py"):
        assert left_out not in shipped, left_out


def test_nothing_in_images_imports_a_package_the_image_locks_lack() -> None:
    problems = []
    for name in context.RUNTIME_FILES:
        if name.endswith(".py"):
            module = "model_packages." + name.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
            problems += [f"{name} {p}" for p in _problems(SRC / name, module)]
    assert not problems, "\n".join(sorted(set(problems)))


@pytest.mark.parametrize("source, problem", [
    ("import typer\n", "imports typer at module level; not in every serving lock"),
    ("def f():\n    import rich\n", "imports rich, which no image lock has"),
    ("def f():\n    import sklearn\n", None),  # lazy, and the sklearn lock has it
    ("import sklearn\n", "imports sklearn at module level; not in every serving lock"),
    ("try:\n    import pyarrow\nexcept ImportError:\n    pyarrow = None\n", None),
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import docker\n", None),
])
def test_the_import_check_catches_what_would_break_an_image(source: str, problem: str | None,
                                                            tmp_path: Path) -> None:
    """The checks above, on a made-up module: each would fail for a runtime file written so."""
    path = tmp_path / "probe.py"
    path.write_text(source)
    assert _problems(path, "model_packages.probe") == ([problem] if problem else [])


def test_a_module_imported_by_an_entry_point_but_not_listed_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(context, "RUNTIME_FILES", tuple(f for f in context.RUNTIME_FILES if f != "serving/codecs.py"))
    with pytest.raises(AssertionError, match=r"serving/codecs\.py"):
        test_the_image_runtime_is_exactly_what_its_entry_points_import()
