"""The churn DataFrame pipeline in its images: as shipped (compiled, one graph input per column,
onnxruntime only) and served by scikit-learn with pandas; package -> image -> predict in the
container, with the pipeline's own answers; a package that fails to load stops the container with
one log line."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests

from model_packages.image import locks
from model_packages.image.build import BuildResult
from model_packages.image.context import Bases
from model_packages.loading import load_model
from model_packages.package import copy_without_serving_artifact
from tests.support import broken, free_port

from .conftest import RUN_ID, _build

pytestmark = pytest.mark.docker

COLUMNS = ["tenure_months", "monthly_charges", "plan"]
ROWS = [[12.0, 80.5, "basic"], [None, 55.0, "premium"], [40.0, None, "standard"], [3.0, 99.0, "gold"],
        [60.0, 20.0, None]]


@pytest.fixture(scope="session")
def churn_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from examples.train import churn_classifier

    return churn_classifier(tmp_path_factory.mktemp("churn") / "churn-classifier")


@pytest.fixture(scope="session")
def churn_sklearn_package(churn_package: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_without_serving_artifact(churn_package, tmp_path_factory.mktemp("churn-sk") / "churn-classifier")


@pytest.fixture(scope="session")
def churn_image(docker_client: Any, bases: Bases, built_tags: list[str], churn_sklearn_package: Path) -> BuildResult:
    """The pipeline served by scikit-learn with pandas."""
    return _build(docker_client, bases, churn_sklearn_package, "churn", built_tags)


@pytest.fixture(scope="session")
def churn_compiled_image(docker_client: Any, bases: Bases, built_tags: list[str], churn_package: Path) -> BuildResult:
    """The package as shipped: its compiled graph (shares the onnx dependency layer)."""
    return _build(docker_client, bases, churn_package, "churn-compiled", built_tags)


def _expected(package: Path) -> list[str]:
    pipeline = load_model(package, serve_with="source")._estimator  # type: ignore[attr-defined]
    frame = pd.DataFrame(ROWS, columns=COLUMNS, dtype=object)
    frame = frame.astype({"tenure_months": float, "monthly_charges": float})
    frame["plan"] = frame["plan"].where(frame["plan"].notna(), np.nan)
    return [str(v) for v in pipeline.predict(frame)]


@pytest.mark.parametrize("flavor", ["sklearn", "onnx"])
def test_churn_image_answers_like_the_pipeline(runner: Any, churn_package: Path, flavor: str,
                                               request: pytest.FixtureRequest) -> None:
    image: BuildResult = request.getfixturevalue("churn_image" if flavor == "sklearn" else "churn_compiled_image")
    assert image.labels["io.kaizen.lock"] == flavor
    limit = 300e6 if flavor == "sklearn" else 160e6
    assert image.size <= limit, f"{flavor} DataFrame image is {image.size / 1e6:.1f} MB"
    assert not any(p.name == "pandas" for p in locks.read_lock(locks.lock_path("onnx")))
    expected = _expected(churn_package)
    with runner(image.tag, timeout=60) as running:
        post = running.url
        objects = [dict(zip(COLUMNS, row, strict=True)) for row in ROWS]
        assert requests.post(f"{post}/predict", json={"instances": ROWS}, timeout=10).json() == \
            {"predictions": expected}
        assert requests.post(f"{post}/predict", json={"instances": objects}, timeout=10).json() == \
            {"predictions": expected}
        csv_body = "\n".join(",".join("" if v is None else str(v) for v in row) for row in ROWS) + "\n"
        reply = requests.post(f"{post}/invocations", data=csv_body, headers={"Content-Type": "text/csv"}, timeout=10)
        assert reply.json() == {"predictions": expected}
        tenure = [np.nan if r[0] is None else r[0] for r in ROWS]
        head = json.dumps({"inputs": [
            {"name": "tenure_months", "shape": [5], "datatype": "FP64", "parameters": {"binary_data_size": 40}},
            {"name": "monthly_charges", "shape": [5], "datatype": "FP64", "data": [r[1] for r in ROWS]},
            {"name": "plan", "shape": [5], "datatype": "BYTES", "data": [r[2] for r in ROWS]},
        ]}).encode()
        reply = requests.post(f"{post}/v2/models/churn-classifier/infer", data=head + struct.pack("<5d", *tenure),
                              headers={"Content-Type": "application/octet-stream",
                                       "Inference-Header-Content-Length": str(len(head))}, timeout=10)
        assert reply.status_code == 200 and reply.json()["outputs"][0]["data"] == expected
        bad = requests.post(f"{post}/predict", json={"instances": [[1.0, 2.0, ["x"]]]}, timeout=10)
        assert bad.status_code == 400 and "instances[0].plan" in bad.json()["error"]


def test_image_load_failure_is_one_log_line(docker_client: Any, churn_image: BuildResult,
                                            churn_sklearn_package: Path, tmp_path: Path) -> None:
    """A package that verifies but fails at warm-up: the container exits 1 after one JSON line."""
    package = broken.warm_up_fails(Path(shutil.copytree(churn_sklearn_package, tmp_path / "broken")))
    for path in (tmp_path, package, *package.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    container = docker_client.containers.run(
        churn_image.tag, command=["serve"], network_mode="host", read_only=True, tmpfs={"/tmp": "rw,size=16m"},
        environment={"KAIZEN_HOST": "127.0.0.1", "KAIZEN_PORT": str(free_port()), "KAIZEN_MODEL_DIR": "/pkg"},
        volumes={str(package): {"bind": "/pkg", "mode": "ro"}}, detach=True, name=f"kaizen-test-{RUN_ID}-broken")
    try:
        assert container.wait(timeout=60)["StatusCode"] == 1
        logs = container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)
    assert "Traceback" not in logs
    failures = [json.loads(line) for line in logs.splitlines() if '"model_load_failed"' in line]
    assert len(failures) == 1 and "ValueError" in failures[0]["error"], logs


def test_mlflow_client_and_kserve_v1_against_the_image(
    runner: Any, churn_image: BuildResult, churn_package: Path
) -> None:
    """Teams moving from MLflow call the container with MLflow's own client (dataframe_split)."""
    from mlflow.pyfunc.scoring_server.client import ScoringServerClient

    expected = _expected(churn_package)
    frame = pd.DataFrame(ROWS, columns=COLUMNS, dtype=object)
    with runner(churn_image.tag) as running:
        port = int(running.url.rsplit(":", 1)[1])
        answer = ScoringServerClient("127.0.0.1", port).invoke(frame[list(reversed(COLUMNS))])
        assert list(answer["predictions"]) == expected
        v1 = requests.post(f"{running.url}/v1/models/churn-classifier:predict",
                           json={"instances": [dict(zip(COLUMNS, r, strict=True)) for r in ROWS]}, timeout=10)
        assert v1.status_code == 200 and v1.json()["predictions"] == expected
