"""Edge bundles of tensor-input (deep-learning) ONNX models: the bundle carries the tensor
signature, and the minimal runtime answers like the server on the same items (an image CNN, FP32
[N,3,8,8], and a token-sequence regressor, INT64 [N,T] with T dynamic)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from model_packages.edge.bundle import PARITY_ITEMS, export_bundle, parity_tensor
from model_packages.edge.oci import pull_bundle, push_bundle
from model_packages.edge.runtime import EdgeModel, score_lines
from model_packages.image.localregistry import LocalRegistry
from model_packages.loading import load_model
from model_packages.manifest import read_manifest
from model_packages.package import create_package
from tests.conftest import local_registry
from tests.frameworks.onnx_models import CLASSES, image_cnn, sequence_regressor

RNG = np.random.default_rng(7)
IMAGES = RNG.normal(size=(6, 3, 8, 8)).astype(np.float32)
TOKENS = RNG.integers(0, 20, size=(6, 5)).astype(np.int64)


@pytest.fixture(scope="module")
def cnn_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return create_package(image_cnn(), IMAGES, out_dir=tmp_path_factory.mktemp("cnn") / "cnn", name="tiny-cnn",
                          version="1.0.0", labels=CLASSES)


@pytest.fixture(scope="module")
def sequence_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return create_package(sequence_regressor(), TOKENS, out_dir=tmp_path_factory.mktemp("seq") / "seq",
                          name="tiny-seq", version="1.0.0", task="regression")


@pytest.fixture(scope="module")
def edge_registry() -> Iterator[LocalRegistry]:
    with local_registry() as reg:
        yield reg


def _device(bundle: Path, items: list[Any], tmp: Path, *extra: str) -> tuple[int, list[dict[str, Any]]]:
    """`python -m model_packages.edge run` on one JSON Lines item per line (what a device runs)."""
    source = tmp / "items.jsonl"
    source.write_text("".join(json.dumps(item) + "\n" for item in items))
    proc = subprocess.run([sys.executable, "-m", "model_packages.edge", "run", str(bundle), "--input", str(source),
                           *extra], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode in (0, 3), proc.stderr
    return proc.returncode, [json.loads(line) for line in proc.stdout.splitlines()]


def test_the_bundle_carries_the_tensor_signature_and_its_parity(cnn_package: Path, tmp_path: Path) -> None:
    info = export_bundle(cnn_package, tmp_path / "b")
    signature = {"name": "image", "datatype": "FP32", "shape": [-1, 3, 8, 8]}
    assert info["tensor_input"] == signature
    assert json.loads((tmp_path / "b" / "schema.json").read_text())["tensor_input"] == signature
    assert info["parity"] == {"rows": PARITY_ITEMS, "max_abs_diff": 0.0, "labels_equal": 1.0}
    batch = parity_tensor(read_manifest(cnn_package))
    assert batch.shape == (PARITY_ITEMS, 3, 8, 8) and batch.dtype == np.float32 and not batch[0].any()
    edge = EdgeModel(tmp_path / "b")
    server = load_model(cnn_package)
    answers = edge.predict(IMAGES.tolist())
    assert [a["prediction"] for a in answers] == list(server.predict(IMAGES))
    proba = server.predict_proba(IMAGES)
    assert proba is not None
    assert np.array_equal([[a["probabilities"][c] for c in CLASSES] for a in answers], proba.astype(float))
    # Items of the wrong shape or type are refused one by one, the good ones answered.
    lines = [json.dumps(IMAGES[0].tolist()), json.dumps(IMAGES[0, :2].tolist()), '"cat"',
             json.dumps(IMAGES[1].tolist())]
    out = list(score_lines(edge, lines))
    assert [a.get("prediction") for a in out] == [answers[0]["prediction"], None, None, answers[1]["prediction"]]
    assert "shape [1, 2, 8, 8]" in out[1]["error"] and out[1]["row"] == 1
    assert out[2]["row"] == 2 and "non-numeric" in out[2]["error"]


def test_quantised_tensor_bundle_records_its_parity_loss(cnn_package: Path, tmp_path: Path) -> None:
    info = export_bundle(cnn_package, tmp_path / "q", quantise=True)
    assert info["quantization"]["tensors"] >= 1 and info["tensor_input"]["shape"] == [-1, 3, 8, 8]
    manifest = read_manifest(cnn_package)
    batch = parity_tensor(manifest)
    proba = load_model(cnn_package).predict_proba(batch)
    assert proba is not None
    got = [[a["probabilities"][c] for c in CLASSES] for a in EdgeModel(tmp_path / "q").predict(batch.tolist())]
    assert float(np.max(np.abs(np.asarray(got) - proba))) == pytest.approx(info["parity"]["max_abs_diff"], abs=1e-7)
    assert 0 < info["parity"]["max_abs_diff"] < 0.2


@pytest.mark.slow
def test_round_trip_registry_device_and_server_give_the_same_answers(
        cnn_package: Path, sequence_package: Path, edge_registry: LocalRegistry, tmp_path: Path,
        server_factory: Callable[..., Any]) -> None:
    """export -> push by digest -> pull by digest -> the device runtime; the server on the same items."""
    cases: list[tuple[Path, Any]] = [(cnn_package, RNG.normal(size=(5, 3, 8, 8)).astype(np.float32)),
                                     (sequence_package, RNG.integers(0, 20, size=(4, 9)).astype(np.int64))]
    for package, items in cases:
        name = package.name
        export_bundle(package, tmp_path / name / "bundle")
        pushed = push_bundle(tmp_path / name / "bundle", edge_registry.address, audit=False)
        device_dir = pull_bundle(pushed.reference, tmp_path / name / "device")
        code, device = _device(device_dir, items.tolist(), tmp_path / name)
        assert code == 0
        server = server_factory(package)
        answer = requests.post(server.url + "/invocations", json={"instances": items.tolist()}, timeout=30)
        assert answer.status_code == 200, answer.text
        want = answer.json()["predictions"]
        if name == "cnn":
            assert [d["prediction"] for d in device] == want
            code, rich = _device(device_dir, items.tolist(), tmp_path / name, "--probabilities")
            vertex = requests.post(server.url + "/predict", timeout=30, json={
                "instances": items.tolist(), "parameters": {"probabilities": True}}).json()["predictions"]
            assert [[d["probabilities"][c] for c in CLASSES] for d in rich] == \
                [[p["probabilities"][c] for c in CLASSES] for p in vertex]
        else:  # a [N, 2] regression: two numbers per item, and a sequence length the bundle never saw
            assert np.asarray(want).shape == (4, 2)
            assert [d["prediction"] for d in device] == want
        # the device refuses what the server refuses
        bad = items[0].astype(np.float64) + 0.5 if name == "seq" else items[0][:1]
        code, refused = _device(device_dir, [bad.tolist()], tmp_path / name)
        server_says = requests.post(server.url + "/invocations", json={"instances": [bad.tolist()]}, timeout=30)
        assert code == 3 and server_says.status_code == 400
        assert refused[0]["error"].split(": ", 1)[-1] in server_says.text
