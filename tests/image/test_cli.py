"""`kaizen base`, `kaizen build`, `kaizen push` through the real typer app."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from model_packages.cli import app
from model_packages.image.build import BuildResult
from model_packages.image.localregistry import LocalRegistry
from tests.support import EXAMPLES

from .conftest import RUN_ID

pytestmark = pytest.mark.docker


@pytest.fixture
def registry() -> Any:
    """A registry of this test's own: the shared one holds the scikit-learn-served iris 1.0.0."""
    with LocalRegistry() as reg:
        yield reg


def test_build_and_push_commands(
    docker_client: Any,
    compiled_image: BuildResult,
    registry: LocalRegistry,
    built_tags: list[str],
    tmp_path: Path,
) -> None:
    runner = CliRunner()
    tag = f"kaizen-test/iris-cli:{RUN_ID}"
    built = runner.invoke(
        app, ["build", str(EXAMPLES / "iris-classifier"), "--local-base", "--tag", tag, "--json"]
    )
    assert built.exit_code == 0, built.output
    built_tags.append(tag)
    result = json.loads(built.stdout[built.stdout.index("{") :])
    assert result["layers"] == compiled_image.layers  # same inputs, same layers
    records = tmp_path / "kaizen-images.json"
    pushed = runner.invoke(app, ["push", tag, "--registry", registry.address, "--records", str(records)])
    assert pushed.exit_code == 0, pushed.output
    reference = pushed.stdout.strip().splitlines()[-1]
    assert re.fullmatch(rf"{re.escape(registry.address)}/kaizen/iris-classifier@sha256:[0-9a-f]{{64}}", reference)
    assert json.loads(records.read_text())["images"][0]["reference"] == reference


def test_build_refuses_an_invalid_package(tmp_path: Path) -> None:
    package = tmp_path / "empty"
    package.mkdir()
    out = CliRunner().invoke(app, ["build", str(package), "--local-base"])
    assert out.exit_code == 1
    assert "kaizen.yaml is missing" in out.output


def test_push_to_unreachable_registry_names_it(sklearn_image: BuildResult) -> None:
    out = CliRunner().invoke(
        app, ["push", sklearn_image.tag, "--registry", "127.0.0.1:9", "--retries", "1", "--backoff", "0.01"]
    )
    assert out.exit_code == 1
    assert "127.0.0.1:9" in out.output and "unreachable" in out.output
