"""`kaizen package --from-mlflow`: model directories written by the real `mlflow` package."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
import pytest
import requests
import xgboost
from sklearn.ensemble import GradientBoostingClassifier
from typer.testing import CliRunner

from model_packages.cli import app
from model_packages.loading import load_model
from model_packages.manifest import read_manifest

mlflow = pytest.importorskip("mlflow")  # the dev extra installs mlflow-skinny
pd = pytest.importorskip("pandas")

RNG = np.random.default_rng(0)
FRAME = pd.DataFrame(RNG.normal(size=(200, 3)), columns=["tenure", "spend", "visits"])
Y = ((FRAME.tenure + FRAME.spend * FRAME.visits) > 0).astype(int)
# Naming the requirements skips MLflow's requirement inference (a subprocess that reloads the model).
NO_REQS = ["scikit-learn"]
FRESH: Any = pd.DataFrame(RNG.normal(size=(50, 3)), columns=["tenure", "spend", "visits"])


def _package(tmp_path: Path, mlflow_dir: Path, *extra: str) -> Path:
    out = tmp_path / f"pkg-{mlflow_dir.name}"
    result = CliRunner().invoke(app, ["package", "--from-mlflow", str(mlflow_dir), "--name", "churn", "--version",
                                      "1.0.0", "--out", str(out), *extra])
    assert result.exit_code == 0, result.output
    return out


def test_sklearn_flavor_signature_and_example(tmp_path: Path, server_factory: Callable[..., Any]) -> None:
    from mlflow.models import infer_signature

    model: Any = GradientBoostingClassifier(n_estimators=15, random_state=0).fit(FRAME, Y)
    mlflow.sklearn.save_model(model, str(tmp_path / "sk"), signature=infer_signature(FRAME, model.predict(FRAME)),
                              input_example=FRAME.head(3), serialization_format="skops",
                              skops_trusted_types=["sklearn.tree._tree.Tree"], pip_requirements=NO_REQS)
    data = tmp_path / "train.csv"
    FRAME.assign(churned=Y).to_csv(data, index=False)
    package = _package(tmp_path, tmp_path / "sk", "--data", str(data), "--target", "churned")
    manifest = read_manifest(package)
    assert manifest.feature_names == ["tenure", "spend", "visits"]
    assert manifest.input_example == FRAME.head(3).to_numpy().tolist()
    assert manifest.baseline.rows == 200 and manifest.serving is not None  # compiled tree fast path
    server = server_factory(package)
    got = requests.post(server.url + "/invocations", json={"instances": FRESH.to_dict(orient="records")}, timeout=10)
    assert got.status_code == 200 and got.json()["predictions"] == model.predict(FRESH).tolist()


def test_xgboost_and_lightgbm_flavors(tmp_path: Path) -> None:
    xgb = xgboost.XGBClassifier(n_estimators=8, max_depth=3).fit(FRAME, Y)
    mlflow.xgboost.save_model(xgb, str(tmp_path / "xgb"), input_example=FRAME.head(5), pip_requirements=NO_REQS)
    booster: Any = lightgbm.train({"objective": "regression", "verbose": -1, "num_leaves": 7},
                             lightgbm.Dataset(FRAME.to_numpy(), label=FRAME.tenure.to_numpy() * 2), 8)
    mlflow.lightgbm.save_model(booster, str(tmp_path / "lgb"), input_example=FRAME.to_numpy()[:40],
                               pip_requirements=NO_REQS)
    xgb_package = _package(tmp_path, tmp_path / "xgb")
    lgb_package = _package(tmp_path, tmp_path / "lgb")
    assert read_manifest(xgb_package).framework == "xgboost"
    assert read_manifest(lgb_package).framework == "lightgbm"
    assert read_manifest(lgb_package).baseline.rows == 40  # no --data: the input example is the baseline
    for serve_with in ("compiled", "source"):
        assert load_model(xgb_package, serve_with=serve_with).predict(FRESH.to_numpy()).tolist() == \
            xgb.predict(FRESH).tolist()
        assert np.allclose(load_model(lgb_package, serve_with=serve_with).predict(FRESH.to_numpy()),
                           booster.predict(FRESH.to_numpy()), rtol=1e-5, atol=1e-5)


def test_refusals(tmp_path: Path) -> None:
    model: Any = GradientBoostingClassifier(n_estimators=3).fit(FRAME, Y)
    mlflow.sklearn.save_model(model, str(tmp_path / "pickled"), serialization_format="cloudpickle",
                              input_example=FRAME.head(3), pip_requirements=NO_REQS)
    result = CliRunner().invoke(app, ["package", "--from-mlflow", str(tmp_path / "pickled"), "--name", "p",
                                      "--version", "1.0.0", "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and "cloudpickle" in result.output and "--trusted" in result.output
    trusted = _package(tmp_path, tmp_path / "pickled", "--trusted")
    manifest = read_manifest(trusted)
    assert manifest.format == "skops" and not manifest.trusted  # re-saved in a safe format, allow-list applies
    assert load_model(trusted).predict(FRESH.to_numpy()).tolist() == model.predict(FRESH).tolist()
    (tmp_path / "empty").mkdir()
    missing = CliRunner().invoke(app, ["package", "--from-mlflow", str(tmp_path / "empty"), "--name", "p",
                                       "--version", "1.0.0", "--out", str(tmp_path / "o2")])
    assert missing.exit_code == 1 and "MLmodel is missing" in missing.output
