"""`kaizen ci test`: the model repository's own lint and tests, as the pull-request workflow runs them."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from model_packages.ci import checks
from model_packages.cli import app


def _repo(tmp_path: Path, code: str, test: str | None) -> Path:
    (tmp_path / "train.py").write_text(code)
    if test is not None:
        (tmp_path / "tests").mkdir()
        (tmp_path / "tests" / "test_train.py").write_text(test)
    return tmp_path


def test_lint_and_tests_pass_on_a_clean_repository(tmp_path: Path) -> None:
    repo = _repo(tmp_path, "def rows() -> int:\n    return 3\n",
                 "from train import rows\n\n\ndef test_rows() -> None:\n    assert rows() == 3\n")
    (repo / "pyproject.toml").write_text("[tool.pytest.ini_options]\npythonpath = [\".\"]\n")
    assert [c.name for c in checks.repository_checks(repo)] == ["ruff", "pytest"]
    result = CliRunner().invoke(app, ["ci", "test", "--root", str(repo)])
    assert result.exit_code == 0, result.output
    assert "passed: ruff, pytest" in result.output


def test_a_lint_finding_and_a_failing_test_both_fail_the_check(tmp_path: Path) -> None:
    repo = _repo(tmp_path, "import os\n", "def test_fails() -> None:\n    assert 1 == 2\n")
    result = CliRunner().invoke(app, ["ci", "test", "--root", str(repo)])
    assert result.exit_code == 1
    assert "failed: ruff, pytest" in result.output  # every check runs, both are named


def test_a_repository_without_code_or_tests_has_nothing_to_check(tmp_path: Path) -> None:
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / "vendored.py").write_text("import os\n")  # not the repository's code
    assert checks.repository_checks(tmp_path) == []
    result = CliRunner().invoke(app, ["ci", "test", "--root", str(tmp_path)])
    assert result.exit_code == 0 and "nothing to lint or test" in result.output


def test_a_missing_tool_is_named(tmp_path: Path, monkeypatch) -> None:
    repo = _repo(tmp_path, "x = 1\n", None)
    monkeypatch.setattr(checks.importlib.util, "find_spec", lambda name: None)
    result = CliRunner().invoke(app, ["ci", "test", "--root", str(repo)])
    assert result.exit_code == 1 and "ruff is not installed" in result.output and "pip install ruff" in result.output
