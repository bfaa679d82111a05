"""The layers of `infra/`, from the imports every module declares (parsed, not run): the bottom layer
(`infra/common/`, `infra/*_config.py`) imports no target; no target imports a sibling target; no
import cycle among infra modules. Imports inside functions and under TYPE_CHECKING count too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support import ROOT

TARGETS = ("aws", "azure", "gcp", "local")


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted((ROOT / "infra").rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _package(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def imports(name: str) -> set[str]:
    """The infra modules `name` imports (`from a import b` is `a.b` when that is a module)."""
    path = MODULES[name]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                package = _package(name, path).split(".")
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: imports(name) for name in MODULES}


def _target(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in TARGETS else None


def test_the_parser_sees_known_imports() -> None:
    """Guards the test itself: an import it fails to see would make every check below pass."""
    assert "infra.common.config" in GRAPH["infra.aws.stack"]
    assert "infra.local.docker_ops" in GRAPH["infra.local.providers"]  # `from infra.local import docker_ops`
    assert {"infra.aws.rules", "infra.azure.rules", "infra.gcp.rules"} <= GRAPH["infra.cloud_rules"]
    assert len(MODULES) > 50


def test_the_bottom_layer_imports_no_target() -> None:
    bottom = [m for m in MODULES if m.startswith("infra.common") or (m.count(".") == 1 and m.endswith("_config"))]
    assert "infra.common.local_config" in bottom and "infra.drift_config" in bottom
    wrong = {m: sorted(t for t in GRAPH[m] if _target(t)) for m in bottom}
    assert {m: t for m, t in wrong.items() if t} == {}


def test_no_target_imports_a_sibling_target() -> None:
    wrong = {m: sorted(t for t in GRAPH[m] if _target(t) not in (None, _target(m)))
             for m in MODULES if _target(m)}
    assert {m: t for m, t in wrong.items() if t} == {}


def _cycle() -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(GRAPH):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_among_infra_modules() -> None:
    cycle = _cycle()
    assert cycle is None, " -> ".join(cycle or [])


@pytest.mark.parametrize("edge", [("infra.common.rules", "infra.aws.rules")])
def test_the_cycle_check_finds_a_cycle(edge: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The check fails on the cycle common.rules <-> aws.rules this layering removed."""
    source, target = edge
    monkeypatch.setitem(GRAPH, source, GRAPH[source] | {target})
    assert _cycle() is not None


def test_the_packaging_module_imports_no_infra() -> None:
    """`infra` builds on `model_packages` (the serving contract, image refs, stack output names),
    never the reverse: the CLI, CI and retraining code run where no stack program is installed."""
    offenders = []
    for path in sorted((ROOT / "model_packages").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names
                          if n.split(".")[0] in ("infra", "kaizen_infra")]
    assert not offenders, offenders
