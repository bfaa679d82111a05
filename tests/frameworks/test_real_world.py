"""Real-world fixture models, each package -> inspect -> serve -> predict over JSON (/invocations),
Vertex (AIP_PREDICT_ROUTE) and V2, equal to the framework's own predict on the same rows."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
import pytest
import requests
import xgboost
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier, RandomForestClassifier
from typer.testing import CliRunner

from model_packages.cli import app
from model_packages.package import create_package

DATA: Any = load_breast_cancer()
X, Y = DATA.data[:400], DATA.target[:400]
FRESH = DATA.data[400:]


def _categorical() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Colour (6 categories, native categorical support) and a number."""
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 6, 500).astype(float)
    size = rng.normal(size=500)
    x = np.column_stack([colour, size])
    y = (np.isin(colour, [1, 4]) ^ (size > 1.0)).astype(int)
    return x[:400], y[:400], x[400:]


CAT_X, CAT_Y, CAT_FRESH = _categorical()

CASES: dict[str, Callable[[], tuple[Any, np.ndarray, np.ndarray, np.ndarray, bool]]] = {
    # name: (fitted model, x, y, fresh rows, compiled?)
    "gbc": lambda: (GradientBoostingClassifier(n_estimators=30, random_state=0).fit(X, Y), X, Y, FRESH, True),
    "forest": lambda: (RandomForestClassifier(n_estimators=20, random_state=0).fit(X, Y), X, Y, FRESH, True),
    "hgb-categorical": lambda: (HistGradientBoostingClassifier(categorical_features=[0], max_iter=20)  # type: ignore[arg-type]
                                .fit(CAT_X, CAT_Y), CAT_X, CAT_Y, CAT_FRESH, False),
    "xgboost": lambda: (xgboost.XGBClassifier(n_estimators=20, max_depth=3).fit(X, Y), X, Y, FRESH, True),
    "lightgbm": lambda: (lightgbm.LGBMClassifier(n_estimators=20, num_leaves=7, verbose=-1).fit(X, Y), X, Y, FRESH,
                         True),
}


@pytest.mark.parametrize("name", list(CASES))
def test_package_inspect_serve_predict(name: str, tmp_path: Path, server_factory: Callable[..., Any]) -> None:
    model, x, y, fresh, compiled = CASES[name]()
    package = create_package(model, x, y, out_dir=tmp_path / name, name=name, version="1.0.0", trusted=True)
    shown = CliRunner().invoke(app, ["inspect", str(package), "--load", "--json"])
    assert shown.exit_code == 0, shown.output
    summary = json.loads(shown.output)
    assert summary["compilation"]["compiled"] is compiled, summary["compilation"]
    want = model.predict(fresh).tolist()
    server = server_factory(package, env={"AIP_PREDICT_ROUTE": "/v1/predict"})
    sagemaker = requests.post(server.url + "/invocations", json={"instances": fresh.tolist()}, timeout=10)
    assert sagemaker.status_code == 200 and sagemaker.json()["predictions"] == want, sagemaker.text
    vertex = requests.post(server.url + "/v1/predict", json={"instances": fresh.tolist(),
                                                             "parameters": {"probabilities": True}}, timeout=10)
    assert [p["label"] for p in vertex.json()["predictions"]] == want
    proba = [[p["probabilities"][k] for k in ("0", "1")] for p in vertex.json()["predictions"]]
    assert np.allclose(proba, model.predict_proba(fresh), atol=1e-5)
    v2 = {"inputs": [{"name": "input", "shape": list(fresh.shape), "datatype": "FP64",
                      "data": fresh.reshape(-1).tolist()}]}
    answer = requests.post(server.url + f"/v2/models/{name}/infer", json=v2, timeout=10)
    assert answer.status_code == 200 and answer.json()["outputs"][0]["data"] == want, answer.text
