"""The real-world fixture models in their images: GradientBoosting (compiled), HistGradientBoosting
with native categoricals (served by scikit-learn), LightGBM (compiled), an ONNX CNN taking image
tensors, and a model imported from an MLflow directory; each answers in the container, over JSON
and V2, exactly like the framework's own predict. (The churn DataFrame pipeline, the random forest
and native XGBoost have their images in test_dataframe_image.py and test_framework_images.py.)"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from typer.testing import CliRunner

from model_packages.cli import app
from model_packages.image.context import Bases
from model_packages.package import create_package
from tests.frameworks import test_real_world as real_world
from tests.frameworks.onnx_models import CLASSES, image_cnn

from .conftest import _build

pytestmark = pytest.mark.docker


@dataclass
class Case:
    package: Path
    instances: list[Any]
    v2: dict[str, Any]
    want: list[Any]
    flavor: str


def _tabular(name: str, tmp: Path) -> Case:
    model, x, y, fresh, compiled = real_world.CASES[name]()
    package = create_package(model, x, y, out_dir=tmp / name, name=name, version="1.0.0", trusted=True)
    v2 = {"inputs": [{"name": "input", "shape": list(fresh.shape), "datatype": "FP64",
                      "data": fresh.reshape(-1).tolist()}]}
    return Case(package, fresh.tolist(), v2, model.predict(fresh).tolist(), "onnx" if compiled else "sklearn")


def _cnn(tmp: Path) -> Case:
    import onnxruntime as ort

    graph = image_cnn()
    rng = np.random.default_rng(1)
    images = rng.normal(size=(6, 3, 8, 8)).astype(np.float32)
    package = create_package(graph, images, out_dir=tmp / "cnn", name="cnn", version="1.0.0", labels=CLASSES)
    batch = rng.normal(size=(4, 3, 8, 8)).astype(np.float32)
    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    proba = np.asarray(session.run(None, {session.get_inputs()[0].name: batch})[0])
    v2 = {"inputs": [{"name": "image", "shape": list(batch.shape), "datatype": "FP32",
                      "data": batch.reshape(-1).tolist()}]}
    return Case(package, batch.tolist(), v2, [CLASSES[i] for i in proba.argmax(axis=1)], "onnx")


def _mlflow(tmp: Path) -> Case:
    import mlflow.sklearn as mlflow_sklearn
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.ensemble import GradientBoostingClassifier

    rng = np.random.default_rng(2)
    frame = pd.DataFrame(rng.normal(size=(200, 3)), columns=["tenure", "spend", "visits"])
    y = ((frame.tenure + frame.spend * frame.visits) > 0).astype(int)
    model: Any = GradientBoostingClassifier(n_estimators=15, random_state=0).fit(frame, y)
    mlflow_sklearn.save_model(model, str(tmp / "mlflow-model"), signature=infer_signature(frame, model.predict(frame)),
                              input_example=frame.head(3), serialization_format="skops",
                              skops_trusted_types=["sklearn.tree._tree.Tree"], pip_requirements=["scikit-learn"])
    data = tmp / "train.csv"
    frame.assign(churned=y).to_csv(data, index=False)
    out = tmp / "from-mlflow"
    result = CliRunner().invoke(app, ["package", "--from-mlflow", str(tmp / "mlflow-model"), "--name", "mlflowed",
                                      "--version", "1.0.0", "--out", str(out), "--data", str(data),
                                      "--target", "churned"])
    assert result.exit_code == 0, result.output
    fresh = pd.DataFrame(rng.normal(size=(20, 3)), columns=["tenure", "spend", "visits"])
    v2 = {"inputs": [{"name": c, "shape": [len(fresh)], "datatype": "FP64", "data": fresh[c].tolist()}
                     for c in fresh.columns]}
    return Case(out, fresh.to_dict(orient="records"), v2, model.predict(fresh).tolist(), "onnx")


CASES: dict[str, Callable[[Path], Case]] = {
    "gbc": lambda tmp: _tabular("gbc", tmp),
    "hgb-categorical": lambda tmp: _tabular("hgb-categorical", tmp),
    "lightgbm": lambda tmp: _tabular("lightgbm", tmp),
    "cnn": _cnn,
    "mlflow": _mlflow,
}


@pytest.mark.parametrize("name", list(CASES))
def test_real_world_model_answers_in_its_image(
    name: str, docker_client: Any, bases: Bases, built_tags: list[str], runner: Callable[..., Any],
    tmp_path: Path,
) -> None:
    case = CASES[name](tmp_path)
    image = _build(docker_client, bases, case.package, f"real-{name}", built_tags)
    assert image.labels["io.kaizen.lock"] == case.flavor
    if case.flavor == "onnx":
        assert image.size <= 160e6, f"{name}: compiled image is {image.size / 1e6:.1f} MB"
    model = image.labels["io.kaizen.model.name"]
    with runner(image.tag, timeout=60) as running:
        json_answer = requests.post(running.url + "/invocations", json={"instances": case.instances}, timeout=10)
        assert json_answer.status_code == 200, json_answer.text
        assert json_answer.json()["predictions"] == case.want
        v2_answer = requests.post(running.url + f"/v2/models/{model}/infer", json=case.v2, timeout=10)
        assert v2_answer.status_code == 200, v2_answer.text
        assert v2_answer.json()["outputs"][0]["data"] == case.want
