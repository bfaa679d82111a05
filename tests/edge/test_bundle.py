"""`kaizen export edge`: the bundle's files, its recorded parity, and the minimal runtime."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model_packages.edge.bundle import EdgeError, export_bundle, parity_rows
from model_packages.edge.runtime import BundleError, EdgeModel, read_bundle
from model_packages.loading import load_model
from model_packages.manifest import read_manifest
from model_packages.package import copy_without_serving_artifact
from model_packages.serving.schema import InputSchema
from tests.support import ROOT

IRIS = ROOT / "examples" / "iris-classifier"


def test_bundle_of_the_compiled_example_answers_like_the_server_model(tmp_path: Path) -> None:
    info = export_bundle(IRIS, tmp_path / "b")
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [
        "baseline.json", "bundle.json", "model.onnx", "schema.json"]
    assert info["quantization"] is None
    assert info["parity"] == {"rows": len(parity_rows(read_manifest(IRIS))), "max_abs_diff": 0.0, "labels_equal": 1.0}
    edge = EdgeModel(tmp_path / "b")
    rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
    server = load_model(IRIS)
    matrix = InputSchema(read_manifest(IRIS)).matrix(rows)
    answers = edge.predict(rows)
    assert [a["prediction"] for a in answers] == [str(v) for v in server.predict(matrix)]
    proba = server.predict_proba(matrix)
    assert proba is not None
    assert np.allclose([list(a["probabilities"].values()) for a in answers], proba, atol=1e-12)


def test_quantised_bundle_records_its_parity_loss(mlp_package: Path, tmp_path: Path) -> None:
    plain = export_bundle(mlp_package, tmp_path / "plain")
    info = export_bundle(mlp_package, tmp_path / "q", quantise=True)
    assert plain["parity"]["max_abs_diff"] < 1e-6
    assert info["quantization"]["tensors"] >= 2  # both dense layers' weights are int8 now
    assert 0 < info["parity"]["max_abs_diff"] < 0.1, info["parity"]
    import onnx

    ops = {n.op_type for n in onnx.load(str(tmp_path / "q" / "model.onnx")).graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops, ops
    # The recorded numbers are what scoring the parity rows gives.
    manifest = read_manifest(mlp_package)
    rows = parity_rows(manifest)
    server = load_model(mlp_package)
    proba = server.predict_proba(InputSchema(manifest).matrix(rows))
    assert proba is not None
    edge = [list(a["probabilities"].values()) for a in EdgeModel(tmp_path / "q").predict(rows)]
    assert float(np.max(np.abs(np.asarray(edge) - proba))) == pytest.approx(info["parity"]["max_abs_diff"], abs=1e-7)


def test_quantise_refuses_a_graph_without_float32_weights(tmp_path: Path) -> None:
    with pytest.raises(EdgeError, match=r"nothing to quantise in serving\.onnx"):
        export_bundle(IRIS, tmp_path / "b", quantise=True)
    assert not (tmp_path / "b").exists()


def test_package_without_onnx_is_refused(tmp_path: Path) -> None:
    source_only = copy_without_serving_artifact(IRIS, tmp_path / "iris")
    with pytest.raises(EdgeError, match="has no ONNX model"):
        export_bundle(source_only, tmp_path / "b")


def test_altered_bundle_is_refused(tmp_path: Path) -> None:
    export_bundle(IRIS, tmp_path / "b")
    schema = json.loads((tmp_path / "b" / "schema.json").read_text())
    schema["inputs"][0]["maximum"] = 1e9
    (tmp_path / "b" / "schema.json").write_text(json.dumps(schema))
    with pytest.raises(BundleError, match=r"schema\.json has sha256"):
        read_bundle(tmp_path / "b")


def test_minimal_runtime_scores_jsonl_without_an_http_framework(tmp_path: Path) -> None:
    export_bundle(IRIS, tmp_path / "b")
    rows = tmp_path / "rows.jsonl"
    rows.write_text('[5.1,3.5,1.4,0.2]\n{"sepal_length":6.7,"sepal_width":3.0,"petal_length":5.2,'
                    '"petal_width":2.3}\n[5.1,3.5,-4,0.2]\nnot json\n')
    probe = (
        "import sys, runpy\n"
        "sys.argv = ['edge', 'run', sys.argv[1], '--input', sys.argv[2]]\n"
        "try:\n    runpy.run_module('model_packages.edge', run_name='__main__')\n"
        "except SystemExit as e:\n    code = e.code\n"
        "heavy = sorted(m for m in ('httptools', 'uvloop', 'prometheus_client', 'sklearn', 'scipy', 'typer',"
        " 'rich', 'requests', 'model_packages.serving.server', 'model_packages.serving.app') if m in sys.modules)\n"
        "print('MODULES', heavy, 'onnxruntime' in sys.modules)\n"
        "sys.exit(code)\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "b"), str(rows)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 3, proc.stderr  # some rows were refused
    lines = proc.stdout.splitlines()
    assert lines[-1] == "MODULES [] True"
    answers = [json.loads(line) for line in lines[:-1]]
    assert [a.get("prediction") for a in answers[:2]] == ["setosa", "virginica"]
    assert answers[2]["row"] == 2 and "petal_length" in answers[2]["error"]
    assert answers[3] == {"row": 3, "error": "line 4 is not JSON"}
