"""Deep-learning ONNX models with tensor inputs: schema from the graph, served over HTTP as
`{"instances": [...]}` nested arrays (also Vertex's route) and V2 tensors (JSON and binary)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import requests
from typer.testing import CliRunner

from model_packages.cli import app
from model_packages.errors import PackageError
from model_packages.manifest import read_manifest
from model_packages.package import create_package, verify_package
from tests.frameworks.onnx_models import CLASSES, image_cnn, sequence_regressor

RNG = np.random.default_rng(0)
IMAGES = RNG.normal(size=(6, 3, 8, 8)).astype(np.float32)


def _own(model: bytes, feed: np.ndarray) -> np.ndarray:
    """The framework's own answer: onnxruntime on the graph itself."""
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {session.get_inputs()[0].name: feed})[0])


@pytest.fixture(scope="module")
def cnn() -> bytes:
    return image_cnn()


def test_schema_comes_from_the_graph(tmp_path: Path, cnn: bytes) -> None:
    package = create_package(cnn, IMAGES, out_dir=tmp_path / "cnn", name="cnn", version="1.0.0", labels=CLASSES)
    manifest = verify_package(package, load=True)
    assert manifest.inputs == [] and manifest.tensor_input is not None
    assert manifest.tensor_input.model_dump() == {"name": "image", "datatype": "FP32", "shape": [-1, 3, 8, 8]}
    assert manifest.output.labels == CLASSES and manifest.baseline.rows == 6
    shown = CliRunner().invoke(app, ["inspect", str(package), "--json"])
    assert shown.exit_code == 0 and json.loads(shown.output)["tensor_input"]["shape"] == [-1, 3, 8, 8]
    text = CliRunner().invoke(app, ["inspect", str(package)])
    assert "tensor input image FP32 [-1, 3, 8, 8]" in text.output
    with pytest.raises(PackageError, match=r"sample inputs do not fit the model: .*shape \[6, 3, 8\]"):
        create_package(cnn, IMAGES[:, :, :, 0], out_dir=tmp_path / "bad", name="bad", version="1.0.0",
                       labels=CLASSES)


def test_cnn_served_over_every_json_contract(tmp_path: Path, cnn: bytes, server_factory: Callable[..., Any]) -> None:
    package = create_package(cnn, IMAGES, out_dir=tmp_path / "cnn", name="cnn", version="1.0.0", labels=CLASSES)
    server = server_factory(package, env={"AIP_PREDICT_ROUTE": "/v1/models/cnn:predict"})
    batch = RNG.normal(size=(5, 3, 8, 8)).astype(np.float32)
    want_proba = _own(cnn, batch)
    want = [CLASSES[i] for i in want_proba.argmax(axis=1)]
    body = {"instances": batch.tolist()}
    got = requests.post(server.url + "/invocations", json=body, timeout=10)
    assert got.status_code == 200, got.text
    assert got.json()["predictions"] == want
    vertex = requests.post(server.url + "/v1/models/cnn:predict", json={**body, "parameters": {"probabilities": True}},
                           timeout=10).json()["predictions"]
    assert [p["label"] for p in vertex] == want
    assert np.allclose([[p["probabilities"][c] for c in CLASSES] for p in vertex], want_proba, atol=1e-6)
    meta = requests.get(server.url + "/v2/models/cnn", timeout=10).json()
    assert meta["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 3, 8, 8]}]
    v2 = {"inputs": [{"name": "image", "shape": list(batch.shape), "datatype": "FP32",
                      "data": batch.reshape(-1).tolist()}], "outputs": [{"name": "predict"}, {"name": "predict_proba"}]}
    answer = requests.post(server.url + "/v2/models/cnn/infer", json=v2, timeout=10).json()
    assert answer["outputs"][0]["data"] == want
    assert np.allclose(np.reshape(answer["outputs"][1]["data"], (5, 3)), want_proba, atol=1e-6)
    header = json.dumps({"inputs": [{"name": "image", "shape": list(batch.shape), "datatype": "FP32",
                                     "parameters": {"binary_data_size": batch.nbytes}}]}).encode()
    binary = requests.post(server.url + "/v2/models/cnn/infer", data=header + batch.astype("<f4").tobytes(),
                           headers={"Inference-Header-Content-Length": str(len(header))}, timeout=10)
    assert binary.status_code == 200, binary.text and binary.json()["outputs"][0]["data"] == want
    # Bad input is a 400 that names the problem.
    cases: list[tuple[Any, str]] = [
        ({"instances": batch[:, :2].tolist()}, "shape [5, 2, 8, 8]; image takes [N, 3, 8, 8]"),
        ({"instances": [batch[0].tolist(), batch[1, :, :4].tolist()]}, "ragged"),
        ({"instances": [[["a"] * 8] * 8] * 3}, "non-numeric"),
    ]
    for payload, message in cases:
        bad = requests.post(server.url + "/invocations", json=payload, timeout=10)
        assert bad.status_code == 400 and message in bad.json()["error"], bad.text
    csv = requests.post(server.url + "/invocations", data=b"1,2,3", headers={"content-type": "text/csv"}, timeout=10)
    assert csv.status_code == 415 and "tensor" in csv.json()["error"]
    wrong = {"inputs": [{"name": "image", "shape": [1, 3, 4, 4], "datatype": "FP32", "data": [0.0] * 48}]}
    bad_v2 = requests.post(server.url + "/v2/models/cnn/infer", json=wrong, timeout=10)
    assert bad_v2.status_code == 400 and "[1, 3, 4, 4]" in bad_v2.json()["error"]


def test_sequence_model_with_dynamic_length(tmp_path: Path, server_factory: Callable[..., Any]) -> None:
    model = sequence_regressor()
    tokens = RNG.integers(0, 20, size=(4, 7))
    package = create_package(model, tokens, out_dir=tmp_path / "seq", name="seq", version="1.0.0")
    manifest = read_manifest(package)
    assert manifest.tensor_input is not None and manifest.tensor_input.shape == [-1, -1]
    assert manifest.tensor_input.datatype == "INT64" and manifest.output.task == "regression"
    server = server_factory(package)
    longer = RNG.integers(0, 20, size=(3, 11))
    got = requests.post(server.url + "/invocations", json={"instances": longer.tolist()}, timeout=10)
    assert got.status_code == 200, got.text
    assert np.allclose(got.json()["predictions"], _own(model, longer), atol=1e-6)
    v2 = {"inputs": [{"name": "tokens", "shape": [3, 11], "datatype": "INT64", "data": longer.reshape(-1).tolist()}]}
    answer = requests.post(server.url + "/v2/models/seq/infer", json=v2, timeout=10).json()
    assert answer["outputs"][0]["shape"] == [3, 2]
    assert np.allclose(np.reshape(answer["outputs"][0]["data"], (3, 2)), _own(model, longer), atol=1e-6)
    fractional = requests.post(server.url + "/invocations", json={"instances": [[1.5, 2.0]]}, timeout=10)
    assert fractional.status_code == 400 and "non-integer" in fractional.json()["error"]
