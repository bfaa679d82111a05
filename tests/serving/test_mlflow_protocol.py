"""MLflow's scoring protocol on /invocations, spoken by MLflow's own client: the iris example and a
DataFrame pipeline with a string categorical get the model's own predictions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import requests
from mlflow.pyfunc.scoring_server import client as client_module

from examples.train import churn_frame
from model_packages.loading import load_estimator

from ..conftest import EXAMPLES, RunningServer


def _client(server: RunningServer) -> Any:
    host, port = server.url.removeprefix("http://").split(":")
    return client_module.ScoringServerClient(host, int(port))


def test_mlflow_client_gets_the_iris_model_predictions(server_factory: Callable[..., RunningServer]) -> None:
    server = server_factory(EXAMPLES / "iris-classifier")
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    rows = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]])
    frame = pd.DataFrame(rows, columns=names)[list(reversed(names))]  # columns by name, in any order
    answer = _client(server).invoke(frame)
    model = load_estimator(EXAMPLES / "iris-classifier" / "model.skops", "skops", False)
    assert list(answer.get_predictions().iloc[:, 0]) == list(model.predict(rows))


def test_mlflow_client_gets_the_dataframe_pipeline_predictions(
    server_factory: Callable[..., RunningServer],
) -> None:
    server = server_factory(EXAMPLES / "churn-classifier")
    frame, _ = churn_frame(rows=40, seed=3)
    frame = frame.astype(object).where(frame.notna(), None)
    answer = _client(server).invoke(frame)
    model = load_estimator(EXAMPLES / "churn-classifier" / "model.skops", "skops", False)
    expected = model.predict(churn_frame(rows=40, seed=3)[0])
    assert list(answer.get_predictions().iloc[:, 0]) == list(expected)


def test_every_mlflow_shape_and_its_errors(iris_server: RunningServer) -> None:
    row = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
    shapes = [
        {"dataframe_split": {"columns": list(row), "data": [list(row.values())]}},
        {"dataframe_records": [row]},
        {"instances": [row]},
        {"inputs": [list(row.values())]},
        {"inputs": {k: [v] for k, v in row.items()}},
        {"dataframe_records": [row], "params": {"probabilities": False}},
    ]
    answers = [requests.post(f"{iris_server.url}/{route}", json=body, timeout=10)
               for route in ("invocations", "predict") for body in shapes]
    assert [a.status_code for a in answers] == [200] * len(answers), [a.text for a in answers]
    assert len({str(a.json()["predictions"]) for a in answers}) == 1
    csv = requests.post(f"{iris_server.url}/invocations", data=",".join(row) + "\n5.1,3.5,1.4,0.2\n",
                        headers={"Content-Type": "text/csv"}, timeout=10)
    assert csv.status_code == 200 and csv.json() == answers[0].json()  # a header row: columns by name
    bad = [
        ({"dataframe_split": {"columns": list(row), "data": [[1.0]]}}, "dataframe_split.data[0]"),
        ({"dataframe_records": [row], "instances": [row]}, "exactly one"),
        ({"dataframe_split": {"data": [[1]]}}, "dataframe_split.columns"),
        ({"dataframe_records": [{**row, "petal_width": 1000}]}, "petal_width"),
    ]
    for body, needle in bad:
        answer = requests.post(f"{iris_server.url}/invocations", json=body, timeout=10)
        assert answer.status_code == 400 and needle in answer.text, answer.text
        error = answer.json()  # MLflow's error shape, which its clients read, beside Kaizen's own `error`
        assert error["error_code"] == "BAD_REQUEST" and needle in error["message"] and needle in error["error"]


def test_kserve_v1_routes(iris_server: RunningServer) -> None:
    model = "iris-classifier"
    ready = requests.get(f"{iris_server.url}/v1/models/{model}", timeout=10)
    assert ready.status_code == 200 and ready.json() == {"name": model, "ready": True}
    answer = requests.post(f"{iris_server.url}/v1/models/{model}:predict",
                           json={"instances": [[5.1, 3.5, 1.4, 0.2]]}, timeout=10)
    assert answer.status_code == 200 and answer.json()["predictions"] == ["setosa"]
    assert requests.get(f"{iris_server.url}/v1/models/nope", timeout=10).status_code == 404


def test_openapi_describes_every_accepted_shape(iris_server: RunningServer) -> None:
    doc = requests.get(f"{iris_server.url}/openapi.json", timeout=10).json()
    shapes = doc["paths"]["/invocations"]["post"]["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    assert [next(iter(s["required"])) for s in shapes] == [
        "instances", "dataframe_records", "dataframe_split", "inputs", "inputs"]
    assert [s["properties"]["inputs"]["type"] for s in shapes[3:]] == ["array", "object"]  # rows, columns
    predict = doc["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    assert predict == shapes  # /predict reads the same JSON bodies (not CSV)
    assert {"/v1/models/{model}", "/v1/models/{model}:predict"} <= set(doc["paths"])


def test_mlflow_client_gets_the_onnx_regressor_predictions(server_factory: Callable[..., RunningServer]) -> None:
    """The third example: an ONNX regressor, its own onnxruntime session as the reference."""
    import onnxruntime as ort
    from sklearn.datasets import load_diabetes

    server = server_factory(EXAMPLES / "diabetes-regressor")
    from model_packages.manifest import read_manifest

    names = read_manifest(EXAMPLES / "diabetes-regressor").feature_names
    data = pd.DataFrame(np.asarray(load_diabetes(return_X_y=True)[0])[:25], columns=names)
    frame = data[list(reversed(data.columns))]  # columns by name, in any order
    answer = _client(server).invoke(frame)
    session = ort.InferenceSession(str(EXAMPLES / "diabetes-regressor" / "model.onnx"))
    expected = np.asarray(session.run(None, {"input": data.to_numpy(np.float32)})[0]).ravel()
    np.testing.assert_allclose(answer.get_predictions().iloc[:, 0].to_numpy(float), expected, rtol=1e-5, atol=1e-4)
