"""DataFrame-native scikit-learn packages: every contract gives the pipeline's own answers.

The churn pipeline (ColumnTransformer: imputed, scaled numbers and a one-hot string plan with
handle_unknown="ignore"; LogisticRegression) is fitted on a pandas DataFrame; the runtime gives it a
DataFrame with the training columns and dtypes, nulls included, unseen plans included."""

from __future__ import annotations

import csv
import io
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from examples.train import churn_frame, churn_pipeline
from model_packages.manifest import read_manifest
from model_packages.package import copy_without_serving_artifact, create_package
from model_packages.serving.app import App
from model_packages.serving.messages import Request
from tests.conftest import RunningServer
from tests.serving.test_app import call, make_app

#: Rows with a gap in each numeric column, a null plan and a plan training never saw.
ROWS = [
    {"tenure_months": 12.0, "monthly_charges": 80.5, "plan": "basic"},
    {"tenure_months": None, "monthly_charges": 55.0, "plan": "premium"},
    {"tenure_months": 40.0, "monthly_charges": None, "plan": "standard"},
    {"tenure_months": 3.0, "monthly_charges": 99.0, "plan": "gold"},
    {"tenure_months": 60.0, "monthly_charges": 20.0, "plan": None},
]
COLUMNS = ["tenure_months", "monthly_charges", "plan"]


@pytest.fixture(scope="module")
def churn(tmp_path_factory: pytest.TempPathFactory) -> tuple[Pipeline, Path]:
    frame, churned = churn_frame()
    model = churn_pipeline().fit(frame, churned)
    package = create_package(model, frame, churned, out_dir=tmp_path_factory.mktemp("churn") / "churn",
                             name="churn", version="1.0.0")
    return model, package


@pytest.fixture(scope="module", params=["compiled", "source"])
def churn_app(request: pytest.FixtureRequest, churn: tuple[Pipeline, Path],
              tmp_path_factory: pytest.TempPathFactory) -> App:
    """The package as shipped (its compiled graph, one input per column) and the same package
    served by scikit-learn with pandas: every contract must give the pipeline's answers on both."""
    if request.param == "compiled":
        app = make_app(churn[1])[0]
        assert type(app.runner.model).__name__ == "OnnxModel"  # type: ignore[union-attr]
        return app
    source = copy_without_serving_artifact(churn[1], tmp_path_factory.mktemp("churn-source") / "churn")
    app = make_app(source)[0]
    assert type(app.runner.model).__name__ == "SklearnModel"  # type: ignore[union-attr]
    return app


def _expected(model: Pipeline) -> tuple[list[str], np.ndarray]:
    frame = pd.DataFrame(ROWS, columns=COLUMNS).astype({"tenure_months": float, "monthly_charges": float})
    frame["plan"] = frame["plan"].astype(object).where(frame["plan"].notna(), np.nan)
    return [str(v) for v in model.predict(frame)], model.predict_proba(frame)


def test_manifest_records_the_dataframe(churn: tuple[Pipeline, Path]) -> None:
    manifest = read_manifest(churn[1])
    assert manifest.model_input == "dataframe"
    assert manifest.feature_names == COLUMNS
    tenure, charges, plan = manifest.inputs
    assert (tenure.pandas_dtype, tenure.nullable, tenure.allow_nan) == ("float64", True, True)
    assert charges.nullable and plan.dtype == "categorical" and plan.categories == ["basic", "premium", "standard"]
    assert plan.allow_unknown and plan.nullable  # OneHotEncoder(handle_unknown="ignore") takes both
    # Compiled with one graph input per column, checked beyond the training rows: 100 rows with an
    # unseen plan and 100 missing each column.
    assert manifest.serving is not None and manifest.serving.inputs == "columns"
    assert manifest.serving.parity_rows == manifest.baseline.rows + 4 * 100
    assert manifest.serving.max_abs_diff <= 1e-12


def test_every_contract_answers_like_the_pipeline(churn: tuple[Pipeline, Path], churn_app: App) -> None:
    labels, proba = _expected(churn[0])
    as_lists = [[r[c] for c in COLUMNS] for r in ROWS]
    assert call(churn_app, "POST", "/predict", {"instances": as_lists}) == (200, {"predictions": labels})
    assert call(churn_app, "POST", "/predict", {"instances": ROWS}) == (200, {"predictions": labels})
    status, body = call(churn_app, "POST", "/predict", {"instances": ROWS, "parameters": {"probabilities": True}})
    assert status == 200 and [p["label"] for p in body["predictions"]] == labels
    got = np.array([[p["probabilities"][k] for k in ("no", "yes")] for p in body["predictions"]])
    assert np.allclose(got, proba, atol=1e-12)
    assert call(churn_app, "POST", "/invocations", {"instances": ROWS}) == (200, {"predictions": labels})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    writer.writerows([["" if r[c] is None else r[c] for c in COLUMNS] for r in ROWS])
    assert call(churn_app, "POST", "/invocations", buffer.getvalue().encode(), ctype="text/csv") == \
        (200, {"predictions": labels})
    headerless = "\n".join(buffer.getvalue().splitlines()[1:]) + "\n"
    status, body = call(churn_app, "POST", "/invocations", headerless.encode(), ctype="text/csv",
                        headers={b"accept": b"text/csv"})
    assert status == 200 and body["raw"].decode().split() == labels
    url = "/v2/models/churn/infer"
    per_column = [
        {"name": "tenure_months", "shape": [5], "datatype": "FP64", "data": [r["tenure_months"] for r in ROWS]},
        {"name": "monthly_charges", "shape": [5], "datatype": "FP64", "data": [r["monthly_charges"] for r in ROWS]},
        {"name": "plan", "shape": [5], "datatype": "BYTES", "data": [r["plan"] for r in ROWS]},
    ]
    status, body = call(churn_app, "POST", url, {"inputs": per_column, "outputs": [{"name": "predict"},
                                                                                      {"name": "predict_proba"}]})
    assert status == 200 and body["outputs"][0]["data"] == labels
    assert np.allclose(np.array(body["outputs"][1]["data"]).reshape(5, 2), proba, atol=1e-12)
    meta = call(churn_app, "GET", "/v2/models/churn")[1]["inputs"][0]
    assert meta["datatype"] == "BYTES" and meta["parameters"]["features"] == COLUMNS
    matrix = {"name": "input", "shape": [5, 3], "datatype": "BYTES", "data": [v for row in as_lists for v in row]}
    status, body = call(churn_app, "POST", url, {"inputs": [matrix]})
    assert status == 200 and body["outputs"][0]["data"] == labels


def test_v2_binary_numeric_columns(churn: tuple[Pipeline, Path], churn_app: App) -> None:
    """Numeric columns as binary FP64 tensors beside a JSON BYTES column."""
    labels, _ = _expected(churn[0])
    tenure = [np.nan if r["tenure_months"] is None else r["tenure_months"] for r in ROWS]
    charges = [np.nan if r["monthly_charges"] is None else r["monthly_charges"] for r in ROWS]
    binary = struct.pack("<5d", *tenure) + struct.pack("<5d", *charges)
    header = {"inputs": [
        {"name": "tenure_months", "shape": [5], "datatype": "FP64", "parameters": {"binary_data_size": 40}},
        {"name": "monthly_charges", "shape": [5], "datatype": "FP64", "parameters": {"binary_data_size": 40}},
        {"name": "plan", "shape": [5], "datatype": "BYTES", "data": [r["plan"] for r in ROWS]},
    ]}
    import json

    head = json.dumps(header).encode()
    status, body = call(churn_app, "POST", "/v2/models/churn/infer", head + binary, ctype="application/octet-stream",
                        headers={b"inference-header-content-length": str(len(head)).encode()})
    assert status == 200 and body["outputs"][0]["data"] == labels


def test_unseen_categories_are_counted_for_drift(churn: tuple[Pipeline, Path]) -> None:
    app, _ = make_app(churn[1])
    runner = app.runner
    assert runner is not None
    frame, _ = churn_frame()  # the training rows themselves (another seed is another distribution)
    frame = frame.sample(400, random_state=1)
    training_like = frame.astype(object).where(frame.notna(), None).to_numpy().tolist()
    for start in range(0, 400, 20):  # requests of 20 rows: one request fills at most 2% of a window
        assert call(app, "POST", "/predict", {"instances": training_like[start:start + 20]})[0] == 200
    clock = [0.0]
    runner.drift.clock = lambda: clock[0]
    runner.drift._window_start = 0.0
    clock[0] = 3600.0  # the window's time is up: the timer closes it
    verdict = runner.drift.tick()
    assert verdict is not None and verdict.rows == 400 and verdict.alarm is False
    # Every input feature and the model's predictions (the package records their baseline).
    assert set(verdict.features) == {*COLUMNS, "__prediction__"} and verdict.features["plan"].psi < 0.1
    assert runner.drift.unseen_fractions()["plan"] == 0.0
    unseen = [[30.0, 70.0, "gold"]] * 20
    for _ in range(20):
        assert call(app, "POST", "/predict", {"instances": unseen})[0] == 200
    clock[0] = 7200.0
    verdict = runner.drift.tick()
    assert verdict is not None and verdict.alarm is True and verdict.features["plan"].alarm
    assert runner.drift.unseen_fractions()["plan"] == pytest.approx(1.0)
    metrics = app.handle(Request("GET", "/metrics")).body.decode()
    assert 'kaizen_feature_unseen_fraction{feature="plan"} 1.0' in metrics
    assert 'kaizen_drift_psi{feature="plan"}' in metrics and 'kaizen_drift_psi{feature="__prediction__"}' in metrics
    assert "kaizen_drift_alarm 1.0" in metrics


def test_model_that_cannot_take_nulls_or_unseen_gets_400s(tmp_path: Path) -> None:
    frame, churned = churn_frame()
    complete = frame.dropna()
    strict = Pipeline([
        ("columns", ColumnTransformer([("numeric", StandardScaler(), ["tenure_months", "monthly_charges"]),
                                       ("plan", OneHotEncoder(handle_unknown="error"), ["plan"])])),
        ("model", LogisticRegression(max_iter=500)),
    ]).fit(complete, churned[complete.index])
    package = create_package(strict, complete, churned[complete.index], out_dir=tmp_path / "strict", name="strict",
                             version="1.0.0")
    tenure, _, plan = read_manifest(package).inputs
    assert not tenure.nullable and not tenure.allow_nan and not plan.allow_unknown and not plan.nullable
    app, _ = make_app(package)
    status, body = call(app, "POST", "/predict", {"instances": [[None, 50.0, "basic"]]})
    assert status == 400 and "instances[0].tenure_months" in body["error"]
    status, body = call(app, "POST", "/predict", {"instances": [{"tenure_months": 3, "monthly_charges": 50,
                                                                 "plan": "gold"}]})
    assert status == 400 and "instances[0].plan: 'gold' is not one of the categories" in body["error"]
    status, body = call(app, "POST", "/invocations", b"3,50,\n", ctype="text/csv")
    assert status == 400 and "csv[0].plan" in body["error"]
    assert call(app, "POST", "/predict", {"instances": [[3, 50, "basic"]]})[0] == 200


def test_dtypes_are_the_training_dtypes(tmp_path: Path) -> None:
    """Integer, boolean and pandas category columns reach the model with their training dtypes."""
    from sklearn.base import BaseEstimator, ClassifierMixin

    from model_packages.loading import load_model

    frame = pd.DataFrame({"count": np.arange(40) % 5, "flag": np.arange(40) % 2 == 0,
                          "colour": pd.Categorical(["red", "blue"] * 20), "x": np.linspace(0, 1, 40)})
    y = (frame["count"] > 2).astype(int).to_numpy()
    model = Pipeline([
        ("columns", ColumnTransformer([("c", OneHotEncoder(), ["colour"])], remainder="passthrough")),
        ("model", LogisticRegression()),
    ]).fit(frame, y)
    package = create_package(model, frame, y, out_dir=tmp_path / "dtypes", name="dtypes", version="1.0.0")
    manifest = read_manifest(package)
    assert [f.pandas_dtype for f in manifest.inputs] == ["int64", "bool", "category", "float64"]
    loaded = load_model(package, serve_with="source")
    seen: list[pd.Series] = []

    class Spy(BaseEstimator, ClassifierMixin):
        def predict(self, x: pd.DataFrame) -> np.ndarray:
            seen.append(x.dtypes)
            return model.predict(x)

    loaded._estimator = Spy()  # type: ignore[attr-defined]
    app, _ = make_app(package)
    app.runner.model = loaded  # type: ignore[union-attr]
    status, body = call(app, "POST", "/predict", {"instances": [[3, True, "red", 0.5]]})
    assert status == 200 and body["predictions"] == model.predict(frame.iloc[[0]].assign(
        count=3, flag=True, colour=pd.Categorical(["red"], categories=["blue", "red"]), x=0.5)).tolist()
    assert [str(d) for d in seen[-1]] == ["int64", "bool", "category", "float64"]


def test_array_fitted_model_still_gets_an_array(tmp_path: Path) -> None:
    from model_packages.loading import load_model

    x = np.random.default_rng(0).normal(size=(50, 2))
    y = (x[:, 0] > 0).astype(int)
    package = create_package(LogisticRegression().fit(x, y), x, y, out_dir=tmp_path / "arr", name="arr",
                             version="1.0.0", compile_onnx=False)
    assert read_manifest(package).model_input == "array"
    assert load_model(package)._input is np.asarray  # type: ignore[attr-defined]


def test_churn_package_inspect_serve_predict_over_http(tmp_path: Path,
                                                       server_factory: Callable[..., RunningServer]) -> None:
    """The real-world path: `kaizen package` on CSV -> `kaizen inspect --load` -> a served process ->
    every contract over HTTP, with the pipeline's own predictions on the same rows."""
    import skops.io as sio
    from typer.testing import CliRunner

    from model_packages.cli import app as cli

    frame, churned = churn_frame()
    model = churn_pipeline().fit(frame, churned)
    sio.dump(model, tmp_path / "model.skops")
    frame.assign(churned=churned).to_csv(tmp_path / "train.csv", index=False)
    runner = CliRunner()
    packaged = runner.invoke(cli, ["package", str(tmp_path / "model.skops"), "--data", str(tmp_path / "train.csv"),
                                   "--target", "churned", "--name", "churn", "--version", "1.0.0",
                                   "--out", str(tmp_path / "pkg")])
    assert packaged.exit_code == 0, packaged.output
    inspected = runner.invoke(cli, ["inspect", str(tmp_path / "pkg"), "--load"])
    assert inspected.exit_code == 0 and "plan" in inspected.output and "DataFrame" in inspected.output
    labels, proba = _expected(model)
    as_lists = [[r[c] for c in COLUMNS] for r in ROWS]
    server = server_factory(tmp_path / "pkg")
    url = server.url

    def post(path: str, **kwargs: Any) -> Any:
        reply = requests.post(url + path, timeout=10, **kwargs)
        assert reply.status_code == 200, reply.text
        return reply

    assert post("/predict", json={"instances": as_lists}).json() == {"predictions": labels}
    assert post("/predict", json={"instances": ROWS}).json() == {"predictions": labels}
    vertex = post("/predict", json={"instances": ROWS, "parameters": {"probabilities": True}}).json()
    assert np.allclose([[p["probabilities"][k] for k in ("no", "yes")] for p in vertex["predictions"]], proba)
    assert post("/invocations", json={"instances": ROWS}).json() == {"predictions": labels}
    csv_body = "\n".join(",".join("" if v is None else str(v) for v in row) for row in as_lists) + "\n"
    assert post("/invocations", data=csv_body, headers={"Content-Type": "text/csv"}).json() == {"predictions": labels}
    assert post("/invocations", data=csv_body, headers={"Content-Type": "text/csv", "Accept": "text/csv"}
                ).text.split() == labels
    per_column = {"inputs": [
        {"name": "tenure_months", "shape": [5], "datatype": "FP64", "data": [r["tenure_months"] for r in ROWS]},
        {"name": "monthly_charges", "shape": [5], "datatype": "FP64", "data": [r["monthly_charges"] for r in ROWS]},
        {"name": "plan", "shape": [5], "datatype": "BYTES", "data": [r["plan"] for r in ROWS]},
    ]}
    assert post("/v2/models/churn/infer", json=per_column).json()["outputs"][0]["data"] == labels
    matrix = {"inputs": [{"name": "input", "shape": [5, 3], "datatype": "BYTES",
                          "data": [v for row in as_lists for v in row]}]}
    assert post("/v2/models/churn/infer", json=matrix).json()["outputs"][0]["data"] == labels
    bad = requests.post(url + "/predict", json={"instances": [[1.0, "x", "basic"]]}, timeout=10)
    assert bad.status_code == 400 and "instances[0].monthly_charges" in bad.json()["error"]


def test_fast_sklearn_settings_reach_the_predicting_thread(churn: tuple[Pipeline, Path]) -> None:
    """scikit-learn's config is per thread; the server loads in a worker thread and predicts elsewhere."""
    import threading

    import sklearn

    from model_packages.loading import load_model

    seen: dict[str, object] = {}
    loaded = load_model(churn[1], serve_with="source")
    estimator = loaded._estimator  # type: ignore[attr-defined]

    class Probe:
        def predict(self, x: object) -> np.ndarray:
            seen.update(sklearn.get_config())
            return estimator.predict(x)

    loaded._estimator = Probe()  # type: ignore[attr-defined]
    rows = np.array([[12.0, 80.5, "basic"]], dtype=object)
    worker = threading.Thread(target=lambda: loaded.predict(rows))
    worker.start()
    worker.join()
    assert seen["assume_finite"] is True and seen["skip_parameter_validation"] is True
