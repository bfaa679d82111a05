"""Real builds on the Docker engine: image shape, size, reproducibility, layer reuse, failure."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest

from model_packages.image.build import BuildError, BuildResult, build_package, run_build
from model_packages.image.context import Bases, generate_context
from model_packages.manifest import read_manifest, write_manifest
from tests.support import EXAMPLES

from .conftest import RUN_ID

pytestmark = pytest.mark.docker


def new_version(src: Path, dst: Path, version: str, **changes: Any) -> Path:
    package = Path(shutil.copytree(src, dst))
    manifest = read_manifest(package)
    write_manifest(manifest.model_copy(update={"version": version, **changes}), package)
    return package


def test_image_labels_user_entrypoint(docker_client: Any, sklearn_image: BuildResult) -> None:
    attrs = docker_client.images.get(sklearn_image.tag).attrs
    config = attrs["Config"]
    labels = config["Labels"]
    for key in ("source", "revision", "version", "created"):
        assert labels[f"org.opencontainers.image.{key}"]
    assert labels["org.opencontainers.image.version"] == "1.0.0"
    assert labels["io.kaizen.model.name"] == "iris-classifier"
    assert len(labels["io.kaizen.model.artifact-sha256"]) == 64
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["/opt/venv/bin/python", "-m", "model_packages.serving"]
    assert config["Cmd"] == ["serve"]
    assert config["StopSignal"] == "SIGTERM"


def test_sizes_within_targets(
    sklearn_image: BuildResult, onnx_image: BuildResult, compiled_image: BuildResult
) -> None:
    assert sklearn_image.size <= 300e6, f"sklearn image is {sklearn_image.size / 1e6:.1f} MB"
    assert onnx_image.size <= 150e6, f"ONNX image is {onnx_image.size / 1e6:.1f} MB"
    # A scikit-learn package with a compiled serving artifact needs only onnxruntime.
    assert compiled_image.labels["io.kaizen.lock"] == "onnx"
    assert compiled_image.size <= 150e6, f"compiled sklearn image is {compiled_image.size / 1e6:.1f} MB"


def test_layers_base_deps_runtime_model(
    docker_client: Any, bases: Bases, sklearn_image: BuildResult, onnx_image: BuildResult
) -> None:
    base_layers = docker_client.images.get(bases.runtime).attrs["RootFS"]["Layers"]
    for image in (sklearn_image, onnx_image):
        assert image.layers[: len(base_layers)] == base_layers
        assert len(image.layers) == len(base_layers) + 3  # deps, runtime code, model
    # Same runtime code layer in both flavors; different dependency and model layers.
    assert sklearn_image.layers[-2] == onnx_image.layers[-2]
    assert sklearn_image.layers[-3] != onnx_image.layers[-3]


def test_reproducible_from_clean(onnx_image: BuildResult, onnx_clean_image: BuildResult) -> None:
    """Rebuild without any build cache: every layer digest and the labels are the same."""
    assert onnx_clean_image.steps_cached == 0
    assert onnx_clean_image.layers == onnx_image.layers
    assert onnx_clean_image.labels == onnx_image.labels


def test_model_only_change_rebuilds_one_layer(
    docker_client: Any,
    bases: Bases,
    sklearn_image: BuildResult,
    sklearn_package: Path,
    built_tags: list[str],
    tmp_path: Path,
) -> None:
    package = new_version(sklearn_package, tmp_path / "iris", "1.0.1")
    tag = f"kaizen-test/iris:{RUN_ID}-v101"
    # Warm the build cache first: other users of a shared engine may have pruned it.
    build_package(sklearn_package, bases=bases, tag=sklearn_image.tag, client=docker_client)
    result = build_package(package, bases=bases, tag=tag, client=docker_client)
    built_tags.append(tag)
    assert result.layers[:-1] == sklearn_image.layers[:-1]
    assert result.layers[-1] != sklearn_image.layers[-1]
    assert result.labels["org.opencontainers.image.version"] == "1.0.1"
    assert result.steps_cached > 0  # only the model layer was rebuilt (timing lives in bench/bench_image.py)


def test_failed_build_leaves_no_tag_and_no_containers(
    docker_client: Any, bases: Bases, sklearn_image: BuildResult, tmp_path: Path
) -> None:
    marker = f"kaizen-fail-{uuid.uuid4().hex[:8]}"
    tag = f"kaizen-test/broken:{RUN_ID}"
    ctx = generate_context(EXAMPLES / "iris-classifier", tmp_path / "ctx", bases=bases, tag=tag)
    text = ctx.dockerfile.read_text().replace(
        "COPY model/ /", f"COPY model/ /\nRUN exit 3 # {marker}"
    )
    ctx.dockerfile.write_text(text)
    with pytest.raises(BuildError, match=r"exit 3|non-zero code"):
        run_build(ctx, client=docker_client)
    import docker.errors

    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(tag)
    leftovers = [
        c for c in docker_client.containers.list(all=True)
        if marker in " ".join(c.attrs["Config"].get("Cmd") or [])
    ]
    assert leftovers == []


def test_missing_base_is_an_error_not_a_pull(docker_client: Any, tmp_path: Path) -> None:
    with pytest.raises(BuildError, match=r"not present locally.*--pull"):
        build_package(
            EXAMPLES / "iris-classifier",
            bases=Bases("kaizen-test/no-such-base:1", "kaizen-test/no-such-base:1"),
            client=docker_client,
        )
