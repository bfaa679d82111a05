"""The model repository's own lint and tests, as the pull-request workflow's `check` job runs them
(`kaizen ci test`): `ruff check` when the repository holds Python code, `pytest` when it has tests/."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from model_packages.errors import KaizenError

SKIPPED_DIRS = {".git", ".venv", "venv", "node_modules", "__pycache__", ".kaizen"}


@dataclass(frozen=True)
class Check:
    name: str  # the tool, also the module run with `python -m`
    argv: tuple[str, ...]


def _has_python(root: Path) -> bool:
    return any(not SKIPPED_DIRS.intersection(path.relative_to(root).parts) for path in root.rglob("*.py"))


def repository_checks(root: Path) -> list[Check]:
    """What to run in `root`: ruff on its Python code, pytest on its tests/ (neither when absent)."""
    checks = []
    if _has_python(root):
        checks.append(Check("ruff", (sys.executable, "-m", "ruff", "check", ".")))
    if (root / "tests").is_dir():
        checks.append(Check("pytest", (sys.executable, "-m", "pytest", "-q", "tests")))
    for check in checks:
        if importlib.util.find_spec(check.name) is None:
            raise KaizenError(f"{check.name} is not installed: the repository has "
                              f"{'Python code' if check.name == 'ruff' else 'a tests/ directory'}; "
                              f"pip install {check.name}")
    return checks


def run_checks(root: Path, checks: list[Check]) -> list[str]:
    """Run every check in `root` (output streams through); the names of those that failed."""
    failed = []
    for check in checks:
        if subprocess.run(check.argv, cwd=root, check=False).returncode:
            failed.append(check.name)
    return failed
