"""The app without a socket: every route of every contract, and bad input named precisely."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from model_packages.manifest import FeatureSpec
from model_packages.package import create_package
from model_packages.serving.app import App
from model_packages.serving.drift import DriftConfig
from model_packages.serving.logs import JsonLog
from model_packages.serving.messages import Request
from model_packages.serving.runtime import build_runner
from model_packages.serving.settings import Settings, SettingsError
from tests.support import ROOT

IRIS = ROOT / "examples" / "iris-classifier"
ROW = [5.1, 3.5, 1.4, 0.2]


def make_app(package: Path, **settings: object) -> tuple[App, io.StringIO]:
    """The App with the model built as both transports build it (`runtime.build_runner`, via `Runtime.load`);
    no drift timer or GC tuning here, so tests drive drift by hand (tests/serving/test_runtime.py: the rest)."""
    stream = io.StringIO()
    options: dict[str, object] = {"drift": DriftConfig(window_rows=1000, min_rows=10), **settings}
    config = Settings(model_dir=package, **options)  # type: ignore[arg-type]
    app = App(config, JsonLog(stream))
    app.set_runner(build_runner(config))
    return app, stream


@pytest.fixture(scope="module")
def iris_app() -> App:
    return make_app(IRIS)[0]


def call(app: App, method: str, path: str, body: object = None, ctype: str = "application/json",
         headers: dict[bytes, bytes] | None = None) -> tuple[int, dict]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode() if body is not None else b""
    all_headers = {b"content-type": ctype.encode(), **(headers or {})}
    response = App.handle(app, Request(method, path, all_headers, raw))
    payload = json.loads(response.body) if response.content_type == "application/json" else {"raw": response.body}
    return response.status, payload


def test_predict_instances(iris_app: App) -> None:
    status, body = call(iris_app, "POST", "/predict", {"instances": [ROW, [6.7, 3.0, 5.2, 2.3]]})
    assert status == 200 and body == {"predictions": ["setosa", "virginica"]}


def test_predict_objects_and_probabilities(iris_app: App) -> None:
    row = dict(zip(["sepal_length", "sepal_width", "petal_length", "petal_width"], ROW, strict=True))
    status, body = call(iris_app, "POST", "/predict", {"instances": [row], "parameters": {"probabilities": True}})
    assert status == 200
    prediction = body["predictions"][0]
    assert prediction["label"] == "setosa"
    assert set(prediction["probabilities"]) == {"setosa", "versicolor", "virginica"}
    assert abs(sum(prediction["probabilities"].values()) - 1) < 1e-9


def test_invocations_csv_in_and_out(iris_app: App) -> None:
    response = iris_app.handle(Request("POST", "/invocations", {b"content-type": b"text/csv", b"accept": b"text/csv"},
                                       b"5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n"))
    assert response.status == 200 and response.body == b"setosa\nvirginica\n"
    header = b"petal_width,petal_length,sepal_width,sepal_length\n0.2,1.4,3.5,5.1\n"
    status, body = call(iris_app, "POST", "/invocations", header, ctype="text/csv")
    assert status == 200 and body["predictions"] == ["setosa"]


def test_v2_infer_and_metadata(iris_app: App) -> None:
    request = {"id": "abc", "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", "data": ROW}],
               "outputs": [{"name": "predict"}, {"name": "predict_proba"}]}
    status, body = call(iris_app, "POST", "/v2/models/iris-classifier/versions/1.0.0/infer", request)
    assert status == 200 and body["id"] == "abc" and body["model_name"] == "iris-classifier"
    assert body["outputs"][0] == {"name": "predict", "datatype": "BYTES", "shape": [1], "data": ["setosa"]}
    assert body["outputs"][1]["shape"] == [1, 3]
    per_feature = {"inputs": [{"name": n, "shape": [1], "datatype": "FP32", "data": [v]} for n, v in
                              zip(["sepal_length", "sepal_width", "petal_length", "petal_width"], ROW, strict=True)]}
    assert call(iris_app, "POST", "/v2/models/iris-classifier/infer", per_feature)[1]["outputs"][0]["data"] == [
        "setosa"]
    status, meta = call(iris_app, "GET", "/v2/models/iris-classifier")
    assert status == 200 and meta["inputs"][0]["shape"] == [-1, 4]
    assert call(iris_app, "GET", "/v2/models/iris-classifier/ready")[0] == 200
    assert call(iris_app, "GET", "/v2/models/other/ready")[0] == 404
    assert call(iris_app, "POST", "/v2/models/iris-classifier/versions/9.9.9/infer", request)[0] == 404
    assert call(iris_app, "GET", "/v2")[1]["name"] == "kaizen"


def test_v2_binary_extension(iris_app: App) -> None:
    header = json.dumps({"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32",
                                     "parameters": {"binary_data_size": 32}}]}).encode()
    data = np.array([ROW, [6.7, 3.0, 5.2, 2.3]], dtype="<f4").tobytes()
    status, body = call(iris_app, "POST", "/v2/models/iris-classifier/infer", header + data,
                        ctype="application/octet-stream",
                        headers={b"inference-header-content-length": str(len(header)).encode()})
    assert status == 200 and body["outputs"][0]["data"] == ["setosa", "virginica"]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"instances": [[5.1, 3.5, 1.4]]}, 400, "instances[0] has 3 values; the model takes 4 features"),
        ({"instances": [[5.1, 3.5, "x", 0.2]]}, 400, "instances[0].petal_length: expected a number"),
        ({"instances": [{"sepal_length": 1}]}, 400, "missing required feature 'sepal_width'"),
        ({"instances": [{"bogus": 1}]}, 400, "unknown feature 'bogus'"),
        ({"instances": [[5.1, 3.5, 1e9, 0.2]]}, 400, "instances[0].petal_length: 1e+09 is above the maximum 100"),
        ({"instances": [[5.1, -3.5, 1.4, 0.2]]}, 400, "instances[0].sepal_width: -3.5 is below the minimum 0"),
        ({"instances": []}, 400, "instances must be a non-empty list"),
        ({"rows": []}, 400, 'no "instances" field'),
        ([1, 2], 400, "must be a JSON object"),
        (b"{nope", 400, "not valid JSON"),
        (b"", 400, "body is empty"),
        ({"instances": [[5.1, 3.5, 1.4, 0.2]], "parameters": 3}, 400, "parameters must be an object"),
    ],
)
def test_bad_predict_requests_are_named(iris_app: App, body: object, status: int, message: str) -> None:
    got, payload = call(iris_app, "POST", "/predict", body)
    assert got == status
    assert message in payload["error"]


def test_nan_and_infinity_refused(iris_app: App) -> None:
    for token in (b"NaN", b"Infinity", b"-Infinity", b"1e999"):
        status, body = call(iris_app, "POST", "/predict", b'{"instances": [[5.1, 3.5, %s, 0.2]]}' % token)
        assert status == 400 and "petal_length" in body["error"] and "not finite" in body["error"]


def test_content_types(iris_app: App) -> None:
    assert call(iris_app, "POST", "/predict", {"instances": [ROW]}, ctype="text/plain")[0] == 415
    assert call(iris_app, "POST", "/invocations", b"<xml/>", ctype="application/xml")[0] == 415
    assert call(iris_app, "POST", "/invocations", b"5.1,x,1,1", ctype="text/csv")[1]["error"] == (
        "csv[0].sepal_width: 'x' is not a number")
    assert call(iris_app, "POST", "/invocations", b"1,2\n", ctype="text/csv")[1]["error"].startswith(
        "csv row 0 has 2 values")


def test_routes_and_methods(iris_app: App) -> None:
    assert call(iris_app, "GET", "/nowhere")[0] == 404
    status, body = call(iris_app, "GET", "/predict")
    assert status == 405 and "not allowed" in body["error"]
    assert call(iris_app, "GET", "/ping")[0] == 200
    assert call(iris_app, "GET", "/health/live")[0] == 200
    assert json.loads(iris_app.handle(Request("GET", "/openapi.json")).body)["openapi"].startswith("3.")


def test_payload_limit() -> None:
    app, _ = make_app(IRIS, max_body_bytes=2048)
    response = app.handle(Request("POST", "/predict", {}, b"", too_large=True))
    assert response.status == 413 and b"2048" in response.body


def test_not_ready_until_model_loaded(tmp_path: Path) -> None:
    app = App(Settings(model_dir=tmp_path), JsonLog(io.StringIO()))
    assert call(app, "GET", "/ping")[0] == 503
    assert call(app, "GET", "/v2/health/ready")[0] == 503
    assert call(app, "GET", "/health/live")[0] == 200
    assert call(app, "POST", "/invocations", {"instances": [ROW]})[0] == 503


def test_request_log_and_request_id(iris_app: App) -> None:
    app, stream = make_app(IRIS)
    response = app.handle(Request("POST", "/predict", {b"x-request-id": b"req-42"}, json.dumps(
        {"instances": [ROW, ROW]}).encode()))
    assert ("x-request-id", "req-42") in response.headers
    app.log.flush()
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert line["request_id"] == "req-42" and line["status"] == 200 and line["rows"] == 2
    assert line["model"] == "iris-classifier" and line["version"] == "1.0.0" and line["latency_ms"] > 0
    assert "instances" not in stream.getvalue()  # never the payload without data capture


def test_data_capture_to_stdout_has_validated_rows_not_raw_payload() -> None:
    from model_packages.serving.settings import CaptureSettings

    app, stream = make_app(IRIS, capture=CaptureSettings(rate=1.0))
    assert app.capture is not None
    app.handle(Request("POST", "/predict", {b"x-request-id": b"cap-1"}, json.dumps({"instances": [ROW]}).encode()))
    app.handle(Request("POST", "/predict", {}, b"{"))  # a 400: never captured
    app.close()
    app.log.flush()
    records = [json.loads(x) for x in stream.getvalue().splitlines() if '"inputs"' in x]
    assert len(records) == 1
    record = records[0]
    assert record["request_id"] == "cap-1" and record["predictions"] == ["setosa"]
    assert record["inputs"]["sepal_length"] == [5.1] and record["model"] == "iris-classifier"
    assert record["version"] == "1.0.0" and record["time"].endswith("Z")
    assert "instances" not in stream.getvalue()  # the raw body is never logged


def test_metrics_count_requests_and_drift() -> None:
    app, _ = make_app(IRIS)
    for _ in range(3):
        app.handle(Request("POST", "/predict", {}, json.dumps({"instances": [ROW] * 10}).encode()))
    app.handle(Request("POST", "/predict", {}, b"{"))
    text = app.handle(Request("GET", "/metrics")).body.decode()
    assert 'kaizen_requests_total{route="predict",status="200"} 3.0' in text
    assert 'kaizen_request_errors_total{route="predict",status="400"} 1.0' in text
    assert "kaizen_predicted_rows_total 30.0" in text
    assert 'kaizen_model_info{artifact_sha256="' in text
    assert "kaizen_drift_window_rows 0.0" in text  # the timer has not run: nothing binned yet
    assert app.runner is not None
    app.runner.drift.clock = lambda: time.monotonic() + 7200  # an hour later: the window's time is up
    verdict = app.runner.drift.tick()  # what the timer does: close the window (30 >= min_rows 10)
    assert verdict is not None and verdict.alarm is True  # 30 identical rows are far from the training spread
    text = app.handle(Request("GET", "/metrics")).body.decode()
    assert "kaizen_drift_alarm 1.0" in text and "kaizen_drift_windows_total 1.0" in text
    statistic = [x for x in text.splitlines() if x.startswith("kaizen_drift_statistic ")]
    assert statistic and float(statistic[0].split()[1]) >= 1.0
    for family in ("psi", "js", "wasserstein", "feature_statistic", "feature_threshold"):
        assert f'kaizen_drift_{family}{{feature="petal_length"}}' in text


def test_settings_from_env() -> None:
    settings = Settings.from_env({"AIP_HTTP_PORT": "9000", "PORT": "7000", "AIP_HEALTH_ROUTE": "/h",
                                  "AIP_PREDICT_ROUTE": "/p", "KAIZEN_LIVENESS_ROUTE": "/l"})
    assert settings.port == 9000 and settings.health_routes == ("/h",) and settings.predict_routes == ("/p",)
    assert Settings.from_env({"PORT": "7000"}).port == 7000
    assert Settings.from_env({}).port == 8080
    with pytest.raises(SettingsError, match="PORT='x' is not an integer"):
        Settings.from_env({"PORT": "x"})
    with pytest.raises(SettingsError, match="AIP_PREDICT_ROUTE"):
        Settings.from_env({"AIP_PREDICT_ROUTE": "nope"})


def test_custom_routes_serve_contracts() -> None:
    app, _ = make_app(IRIS, health_routes=("/isalive",), liveness_routes=("/live",), predict_routes=("/score",))
    assert call(app, "GET", "/isalive")[0] == 200 and call(app, "GET", "/live")[0] == 200
    assert call(app, "POST", "/score", {"instances": [ROW]})[1] == {"predictions": ["setosa"]}


def _categorical_package(tmp_path: Path) -> Path:
    colors = np.array(["red", "green", "blue"] * 20, dtype=object)
    sizes = np.arange(60) % 7
    x = {"color": colors, "size": sizes}
    y = (sizes > 3).astype(int)
    from sklearn.compose import make_column_transformer

    model = make_pipeline(make_column_transformer((OneHotEncoder(), [0]), remainder="passthrough"),
                          LogisticRegression())
    model.fit(np.column_stack([colors, sizes]), y)
    features = [FeatureSpec(name="color", dtype="categorical", categories=["blue", "green", "red"]),
                FeatureSpec(name="size", dtype="integer", minimum=0, maximum=10),
                ]
    return create_package(model, x, y, out_dir=tmp_path / "cat", name="cat", version="1.0.0", features=features,
                          metrics={})


def test_categorical_and_integer_features(tmp_path: Path) -> None:
    app, _ = make_app(_categorical_package(tmp_path))
    status, body = call(app, "POST", "/predict", {"instances": [["red", 6], ["blue", 1]]})
    assert status == 200 and body["predictions"] == [1, 0]
    status, body = call(app, "POST", "/predict", {"instances": [{"color": "blue", "size": 5}]})
    assert status == 200 and body["predictions"] == [1]
    status, body = call(app, "POST", "/predict", {"instances": [["red", 6], {"color": "blue", "size": 1}]})
    assert status == 400 and "instances[1] must be a list" in body["error"]
    status, body = call(app, "POST", "/predict", {"instances": [["purple", 6]]})
    assert status == 400 and "instances[0].color: 'purple' is not one of the categories" in body["error"]
    status, body = call(app, "POST", "/predict", {"instances": [["red", 2.5]]})
    assert status == 400 and "instances[0].size: 2.5 is not an integer" in body["error"]


def test_v2_tensor_with_too_many_dimensions_is_a_400(iris_app: App) -> None:
    """Finding 13: a 65-dimension tensor made numpy's reshape raise (500)."""
    for dims in (17, 65):
        tensor = {"name": "input", "shape": [1] * dims, "datatype": "FP64", "data": [1]}
        status, body = call(iris_app, "POST", "/v2/models/iris-classifier/infer", {"inputs": [tensor]})
        assert status == 400 and f"has {dims} dimensions" in body["error"]


def test_numeric_v2_tensor_for_string_categorical_is_checked(tmp_path: Path) -> None:
    """Finding 14: numbers sent as a V2 tensor bypassed the category check and reached the model (500)."""
    app, _ = make_app(_categorical_package(tmp_path))
    url = "/v2/models/cat/infer"
    for tensor in ({"name": "input", "shape": [1, 2], "datatype": "FP64", "data": [0, 6]},
                   {"name": "input", "shape": [1, 2], "datatype": "INT32", "data": [1, 6]}):
        status, body = call(app, "POST", url, {"inputs": [tensor]})
        assert status == 400 and "inputs[0].color" in body["error"] and "categories" in body["error"], body
    per_feature = [{"name": "color", "shape": [1], "datatype": "FP64", "data": [2]},
                   {"name": "size", "shape": [1], "datatype": "INT64", "data": [6]}]
    status, body = call(app, "POST", url, {"inputs": per_feature})
    assert status == 400 and "inputs[0].color" in body["error"]
    per_feature[0] = {"name": "color", "shape": [1], "datatype": "BYTES", "data": ["red"]}
    status, body = call(app, "POST", url, {"inputs": per_feature})
    assert status == 200 and body["outputs"][0]["data"] == [1]


@pytest.mark.filterwarnings("ignore:overflow encountered")
@pytest.mark.parametrize("compile_onnx", [True, False])
def test_non_finite_prediction_is_a_client_error_on_every_contract(tmp_path: Path, compile_onnx: bool) -> None:
    """Finding 15: 1e308 into an unbounded regressor gives inf: a 400 on JSON, CSV (any Accept) and V2."""
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3))
    y = x @ np.array([1.0, 2.0, 3.0])
    package = create_package(LinearRegression().fit(x, y), x, y, out_dir=tmp_path / "reg", name="reg",
                             version="1.0.0", compile_onnx=compile_onnx)
    app, _ = make_app(package)
    big = [1e308, 1e308, 1e308]
    answers = [
        call(app, "POST", "/predict", {"instances": [[0, 0, 0], big]}),
        call(app, "POST", "/invocations", b"1e308,1e308,1e308\n", ctype="text/csv"),
        call(app, "POST", "/invocations", b"1e308,1e308,1e308\n", ctype="text/csv",
             headers={b"accept": b"text/csv"}),
        call(app, "POST", "/v2/models/reg/infer",
             {"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP64", "data": big}]}),
    ]
    for status, body in answers:
        assert status == 400 and "not finite" in body["error"], body
    assert "row 1" in answers[0][1]["error"]
    assert call(app, "POST", "/predict", {"instances": [[0, 0, 0]]})[0] == 200


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=30,
)
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(instances=JSON_VALUES, key=st.sampled_from(["instances", "data", "inputs"]))
def test_generated_instances_never_5xx(iris_app: App, instances: object, key: str) -> None:
    status, body = call(iris_app, "POST", "/predict", b"%s" % json.dumps({key: instances}).encode())
    assert status in (200, 400), body
    if status == 400:
        assert body["error"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.lists(st.one_of(st.floats(), st.integers(), st.text(max_size=3), st.none()),
                              min_size=3, max_size=5), min_size=1, max_size=4))
def test_generated_rows_are_accepted_or_named(iris_app: App, rows: list[list[object]]) -> None:
    status, body = call(iris_app, "POST", "/invocations", {"instances": rows})
    valid = all(len(r) == 4 and all(isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 100
                                    for v in r) for r in rows)
    assert status == (200 if valid else 400), body
    if status == 400:
        assert body["error"].startswith("instances[")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=60))
def test_generated_csv_never_5xx(iris_app: App, text: str) -> None:
    status, body = call(iris_app, "POST", "/invocations", text.encode(), ctype="text/csv")
    assert status in (200, 400), body


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.dictionaries(st.sampled_from(["inputs", "outputs", "id", "parameters"]), JSON_VALUES, max_size=4))
def test_generated_v2_never_5xx(iris_app: App, payload: dict[str, object]) -> None:
    status, body = call(iris_app, "POST", "/v2/models/iris-classifier/infer", payload)
    assert status in (200, 400), body


def test_big_answers_are_encoded_in_pieces_to_the_same_json(iris_app: App) -> None:
    from model_packages.serving.messages import JSON_CHUNK, json_response

    predictions = [{"label": "setosa", "probabilities": {"a": 0.5}}] * (JSON_CHUNK * 2 + 7)
    payload = {"predictions": predictions, "model": "m"}
    assert json.loads(json_response(200, payload).body) == payload
    v2 = {"model_name": "m", "outputs": [{"name": "predict", "shape": [2007], "data": list(range(2007))},
                                         {"name": "predict_proba", "data": [0.5] * 3}], "id": "x"}
    assert json.loads(json_response(200, v2).body) == v2
    status, body = call(iris_app, "POST", "/predict", {"instances": [ROW] * (JSON_CHUNK + 1)})
    assert status == 200 and body == {"predictions": ["setosa"] * (JSON_CHUNK + 1)}
    with pytest.raises(ValueError):
        json_response(200, {"predictions": [float("inf")] * (JSON_CHUNK + 1)})
