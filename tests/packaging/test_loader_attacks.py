"""The loader must not be a weapon: crafted packages from the hostile review, each refused.

Reproductions: ../shared/reviews/attacks/ (make_skops_rmtree.py, make_skops_import_gadget.py,
make_onnx_external.py, a20_manifest_paths.sh); findings 1-3, 19 and 20 of the attack report."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import skops.io as sio
import yaml
from onnx import TensorProto, helper
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from model_packages.errors import PackageError
from model_packages.loading import load_model
from model_packages.onnx_check import external_data_locations
from model_packages.package import create_package, verify_package
from tests.support import EXAMPLES, ROOT

IRIS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def _manifest(artifact: str, sha: str, framework: str, inputs: list[dict], output: dict) -> dict:
    return {
        "kaizen_package": 1, "name": "innocent", "version": "1.0.0", "framework": framework,
        "format": "skops" if framework == "sklearn" else "onnx", "artifact": artifact, "artifact_sha256": sha,
        "trusted": False, "inputs": inputs, "output": output, "baseline": {"rows": 150, "features": {}},
        "lineage": {"data_sha256": "0" * 64, "created_at": "2024-01-01T00:00:00Z", "kaizen_version": "0.1.0"},
    }


def _write_manifest(package: Path, data: dict) -> None:
    (package / "kaizen.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def _kaizen(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAIZEN_")}
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run([sys.executable, "-c", "from model_packages.cli import main; main()", *args], cwd=cwd,
                            env=env, capture_output=True, text=True, timeout=120, check=False)
    result.stderr = " ".join(result.stderr.split())  # undo the console's line wrapping
    return result


# -- finding 1: numpy.lib._datasource.DataSource, whose __del__ runs shutil.rmtree -----------------
def _rmtree_package(out: Path, victim: Path) -> Path:
    from numpy.lib._datasource import DataSource

    out.mkdir(parents=True)
    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=300).fit(X, y)
    gadget = DataSource.__new__(DataSource)
    gadget.__dict__.update({"_destpath": str(victim), "_istmpdest": True})
    model.gadget_ = gadget  # type: ignore[attr-defined]
    sio.dump(model, out / "model.skops")
    gadget.__dict__["_istmpdest"] = False  # never fire in the test process
    sha = hashlib.sha256((out / "model.skops").read_bytes()).hexdigest()
    _write_manifest(out, _manifest(
        "model.skops", sha, "sklearn",
        [{"name": n, "dtype": "float", "minimum": 0, "maximum": 100} for n in IRIS],
        {"task": "classification", "labels": [0, 1, 2], "probabilities": True}))
    return out


def test_skops_datasource_gadget_is_refused_and_deletes_nothing(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    package = _rmtree_package(tmp_path / "pkg", victim)
    result = _kaizen("inspect", str(package), "--load", cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "DataSource" in result.stderr
    assert (victim / "precious.txt").read_text() == "keep me"
    with pytest.raises(PackageError, match=r"outside Kaizen's skops allow-list.*DataSource"):
        load_model(package)
    assert victim.is_dir()


# -- finding 2: a type naming numpy.f2py.__main__, whose import runs f2py's main() ---------------
def _import_gadget_package(out: Path) -> Path:
    src = EXAMPLES / "iris-classifier"
    out.mkdir(parents=True)
    zin = zipfile.ZipFile(src / "model.skops")
    schema = json.loads(zin.read("schema.json"))
    schema["content"]["content"]["x_"] = {
        "__class__": "X", "__module__": "numpy.f2py.__main__", "__loader__": "ObjectNode",
        "content": {"__class__": "dict", "__module__": "builtins", "__loader__": "DictNode", "content": {},
                    "key_types": {"__class__": "list", "__module__": "builtins", "__loader__": "ListNode",
                                  "content": [], "__id__": 3},
                    "__id__": 1},
        "__id__": 2,
    }
    with zipfile.ZipFile(out / "model.skops", "w") as zout:
        for name in zin.namelist():
            zout.writestr(name, json.dumps(schema) if name == "schema.json" else zin.read(name))
    manifest = yaml.safe_load((src / "kaizen.yaml").read_text())
    manifest.pop("serving", None)
    manifest["artifact_sha256"] = hashlib.sha256((out / "model.skops").read_bytes()).hexdigest()
    _write_manifest(out, manifest)
    return out


def test_skops_import_gadget_is_refused_without_importing(tmp_path: Path) -> None:
    package = _import_gadget_package(tmp_path / "pkg")
    result = _kaizen("inspect", str(package), "--load", cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "numpy.f2py.__main__.X" in result.stderr + result.stdout
    probe = subprocess.run(
        [sys.executable, "-c",
         "import sys\nfrom model_packages.errors import PackageError\n"
         "from model_packages.loading import load_model\n"
         f"try:\n    load_model({str(package)!r})\nexcept PackageError as e:\n    print('refused', e)\n"
         "print('f2py imported' if 'numpy.f2py.__main__' in sys.modules else 'f2py not imported')"],
        env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=120, check=False)
    assert probe.returncode == 0, probe.stderr
    assert "refused" in probe.stdout and "f2py not imported" in probe.stdout


def test_allow_list_names_estimators_not_module_trees() -> None:
    from model_packages.skops_trust import is_trusted

    assert is_trusted("sklearn.linear_model._logistic.LogisticRegression")
    assert is_trusted("sklearn.compose._column_transformer.ColumnTransformer")
    assert is_trusted("sklearn.feature_extraction.text.TfidfVectorizer")
    assert is_trusted("scipy.sparse._csr.csr_matrix") and is_trusted("numpy.dtype")
    for name in ("numpy.lib._datasource.DataSource", "numpy.memmap", "scipy.io.FortranFile",
                 "sklearn.utils._mocking.CheckingClassifier", "sklearn.conftest.X",
                 "sklearn.linear_model._logistic.LogisticRegressionX", "sklearn.linear_model.os.system",
                 "sklearn.base.BaseEstimator", "numpy.f2py.__main__.X"):
        assert not is_trusted(name), name
    assert "numpy.f2py.__main__" not in sys.modules


def test_crafted_tree_is_refused(tmp_path: Path) -> None:
    """Tree structures are trusted by name, so their indices are checked after loading."""
    from sklearn.tree import DecisionTreeClassifier

    X, y = load_iris(return_X_y=True)
    X = np.asarray(X, dtype=np.float64)
    tree = DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y)
    package = create_package(tree, X, y, out_dir=tmp_path / "tree", name="tree", version="1.0.0",
                             feature_names=IRIS, compile_onnx=False)
    assert load_model(package).predict(X[:2]).tolist() == tree.predict(X[:2]).tolist()
    state = tree.tree_.__getstate__()
    nodes = state["nodes"].copy()
    inner = np.flatnonzero(nodes["left_child"] != -1)
    nodes["feature"][inner[0]] = 10_000  # a split on a feature the model does not have
    state["nodes"] = nodes
    tree.tree_.__setstate__(state)
    bad = tmp_path / "bad"
    shutil.copytree(package, bad)
    sio.dump(tree, bad / "model.skops")
    data = yaml.safe_load((bad / "kaizen.yaml").read_text())
    data["artifact_sha256"] = hashlib.sha256((bad / "model.skops").read_bytes()).hexdigest()
    _write_manifest(bad, data)
    with pytest.raises(PackageError, match="splits on a feature the model does not have"):
        load_model(bad)


# -- finding 3: ONNX external data outside artifact_sha256 -------------------------------------
def _external_onnx(out: Path, location: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    W = helper.make_tensor("W", TensorProto.UINT8, [1], vals=b"\x00", raw=True)
    W.ClearField("raw_data")
    W.data_location = TensorProto.EXTERNAL
    for key, value in {"location": location, "offset": "0", "length": "1"}.items():
        entry = W.external_data.add()
        entry.key, entry.value = key, value
    nodes = [
        helper.make_node("Cast", ["W"], ["Wf"], to=TensorProto.DOUBLE),
        helper.make_node("Slice", ["Wf", "zero", "one"], ["W0"]),
        helper.make_node("Add", ["input", "W0"], ["variable"]),
    ]
    graph = helper.make_graph(
        nodes, "leak",
        [helper.make_tensor_value_info("input", TensorProto.DOUBLE, [None, 1])],
        [helper.make_tensor_value_info("variable", TensorProto.DOUBLE, [None, 1])],
        initializer=[W, helper.make_tensor("zero", TensorProto.INT64, [1], [0]),
                     helper.make_tensor("one", TensorProto.INT64, [1], [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    (out / "model.onnx").write_bytes(model.SerializeToString())
    sha = hashlib.sha256((out / "model.onnx").read_bytes()).hexdigest()
    _write_manifest(out, _manifest("model.onnx", sha, "onnx",
                                   [{"name": "x", "dtype": "float", "minimum": 0, "maximum": 1}],
                                   {"task": "regression"}))
    return out


@pytest.mark.parametrize("location", ["weights.bin", "/etc/hostname", "../../../../../../../../etc/hostname"])
def test_onnx_external_data_is_refused(tmp_path: Path, location: str) -> None:
    package = _external_onnx(tmp_path / "pkg", location)
    (package / "weights.bin").write_bytes(b"\x07")
    with pytest.raises(PackageError, match=r"keeps tensor data outside the file \(external data"):
        verify_package(package)
    result = _kaizen("inspect", str(package), "--load", cwd=tmp_path)
    assert result.returncode == 1 and "external data" in result.stderr + result.stdout


def test_onnx_external_data_found_in_subgraphs_and_constants() -> None:
    """External data is found wherever a tensor can hide: Constant attributes, If branches."""
    tensor = helper.make_tensor("c", TensorProto.FLOAT, [1], vals=b"\x00" * 4, raw=True)
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "hidden.bin"
    const = helper.make_node("Constant", [], ["y"], value=tensor)
    branch = helper.make_graph([const], "b", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    plain = helper.make_graph([helper.make_node("Constant", [], ["y"], value=helper.make_tensor(
        "p", TensorProto.FLOAT, [1], [1.0]))], "p", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    cond = helper.make_node("If", ["c0"], ["y"], then_branch=branch, else_branch=plain)
    graph = helper.make_graph([cond], "g", [helper.make_tensor_value_info("c0", TensorProto.BOOL, [])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph)
    assert external_data_locations(model.SerializeToString()) == ["hidden.bin"]
    assert external_data_locations((EXAMPLES / "diabetes-regressor" / "model.onnx").read_bytes()) == []
    assert onnx.TensorProto.DESCRIPTOR.fields_by_name["data_location"].number == 14


def test_onnxruntime_floor_refuses_traversal(tmp_path: Path) -> None:
    """Defence in depth: the pinned onnxruntime itself refuses external data outside the model dir."""
    import onnxruntime as ort

    for location in ("/etc/hostname", "../../../../../../../../etc/hostname"):
        package = _external_onnx(tmp_path / f"ort-{len(location)}", location)
        with pytest.raises(Exception, match=r"(?i)external data|escapes|absolute"):
            ort.InferenceSession(str(package / "model.onnx"), providers=["CPUExecutionProvider"])


# -- finding 20: symlinked artifacts -----------------------------------------------------------
def test_symlinked_artifact_is_refused(diabetes_package: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.move(diabetes_package / "model.onnx", outside / "model.onnx")
    (diabetes_package / "model.onnx").symlink_to(outside / "model.onnx")
    with pytest.raises(PackageError, match=r"model\.onnx is a symlink"):
        verify_package(diabetes_package)


def test_symlinked_manifest_is_refused(iris_package: Path, tmp_path: Path) -> None:
    shutil.move(iris_package / "kaizen.yaml", tmp_path / "kaizen.yaml")
    (iris_package / "kaizen.yaml").symlink_to(tmp_path / "kaizen.yaml")
    with pytest.raises(PackageError, match=r"kaizen\.yaml .* is a symlink"):
        verify_package(iris_package)


# -- finding 19: credentials in the git remote ------------------------------------------------
@pytest.mark.parametrize(("remote", "expected"), [
    ("https://ci-user:glpat-SECRET@gitlab.example.com/t/kaizen.git", "https://gitlab.example.com/t/kaizen.git"),
    ("https://x-access-token:ghs_SECRET@github.com:443/o/r.git?token=SECRET#frag", "https://github.com:443/o/r.git"),
    ("ssh://git:SECRET@host/o/r.git", "ssh://host/o/r.git"),
    ("git@github.com:o/r.git", "github.com:o/r.git"),
    ("https://github.com/o/r", "https://github.com/o/r"),
])
def test_image_source_label_has_no_credentials(monkeypatch: pytest.MonkeyPatch, remote: str,
                                               expected: str) -> None:
    from model_packages.image import context
    from model_packages.manifest import read_manifest

    monkeypatch.setattr(context, "run_quiet", lambda cmd, cwd: remote if cmd[:3] == ["git", "remote", "get-url"]
                        else None)
    labels = context.oci_labels(read_manifest(EXAMPLES / "iris-classifier"), flavor="onnx", lock_sha256="0" * 64,
                                source=None, revision=None)
    assert labels["org.opencontainers.image.source"] == expected
    assert "SECRET" not in json.dumps(labels)


def test_crafted_hist_gradient_boosting_predictor_is_refused(tmp_path: Path) -> None:
    """skops itself leaves TreePredictor untrusted (unchecked node indices); Kaizen checks them."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from model_packages.loading import load_estimator

    X, y = load_iris(return_X_y=True)
    model = HistGradientBoostingClassifier(max_iter=3, random_state=0).fit(X, y)
    sio.dump(model, tmp_path / "good.skops")
    assert load_estimator(tmp_path / "good.skops", "skops", trusted=False).predict(X[:3]).tolist() == \
        model.predict(X[:3]).tolist()
    nodes = model._predictors[0][0].nodes
    nodes["left"][0] = 10**6  # the root's left child, far outside the tree
    sio.dump(model, tmp_path / "bad.skops")
    with pytest.raises(PackageError, match="child indices outside the tree"):
        load_estimator(tmp_path / "bad.skops", "skops", trusted=False)
    nodes["left"][0], nodes["feature_idx"][0] = 1, 99
    sio.dump(model, tmp_path / "bad2.skops")
    with pytest.raises(PackageError, match="splits on a feature the model does not have"):
        load_estimator(tmp_path / "bad2.skops", "skops", trusted=False)
