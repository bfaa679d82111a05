"""Model package format: creation, verification, safe loading and refusal of bad packages."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import yaml
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from typer.testing import CliRunner

from model_packages.cli import app
from model_packages.errors import PackageError
from model_packages.loading import load_model
from model_packages.manifest import FeatureSpec, read_manifest
from model_packages.package import create_package, describe_package, sklearn_to_onnx, verify_package
from tests.support import broken

RNG = np.random.default_rng(0)
X = RNG.normal(size=(200, 3))
Y_CLASS = np.where(X[:, 0] + X[:, 1] > 0, "yes", "no")
Y_REG = X @ np.array([1.0, -2.0, 0.5]) + 3.0


def test_compiled_serving_artifact_matches_source(tmp_path: Path) -> None:
    model = LogisticRegression().fit(X, Y_CLASS)
    package = create_package(model, X, Y_CLASS, out_dir=tmp_path / "c", name="c", version="1.0.0")
    manifest = read_manifest(package)
    assert manifest.serving is not None and manifest.serving.parity_rows == 200
    assert manifest.serving.max_abs_diff <= 1e-6
    compiled, source = load_model(package), load_model(package, serve_with="source")
    assert type(compiled).__name__ == "OnnxModel" and type(source).__name__ == "SklearnModel"
    fresh = RNG.normal(size=(500, 3)) * 3
    assert compiled.predict(fresh).tolist() == source.predict(fresh).tolist()
    assert np.allclose(compiled.predict_proba(fresh), source.predict_proba(fresh), atol=1e-9)  # type: ignore[arg-type]
    (package / "serving.onnx").write_bytes(b"x")
    with pytest.raises(PackageError, match=r"serving artifact serving\.onnx is corrupt"):
        verify_package(package)
    plain = create_package(model, X, Y_CLASS, out_dir=tmp_path / "p", name="p", version="1.0.0", compile_onnx=False)
    assert read_manifest(plain).serving is None


def test_classifier_package_roundtrip(tmp_path: Path) -> None:
    model = LogisticRegression().fit(X, Y_CLASS)
    package = create_package(model, X, Y_CLASS, out_dir=tmp_path / "clf", name="tiny-clf", version="0.1.0",
                             feature_names=["a", "b", "c"], ranges={"a": (-10.0, 10.0)})
    manifest = verify_package(package, load=True)
    assert manifest.framework == "sklearn" and manifest.format == "skops"
    assert manifest.output.labels == ["no", "yes"] and manifest.output.probabilities
    assert manifest.inputs[0].minimum == -10.0 and manifest.inputs[1].minimum is None
    base = manifest.baseline.features["a"]
    assert base.count == 200 and len(base.bin_fractions) == len(base.bin_edges) + 1
    assert abs(sum(base.bin_fractions) - 1.0) < 1e-9
    assert abs(base.mean - float(X[:, 0].mean())) < 1e-12  # type: ignore[operator]
    assert manifest.baseline.metrics["training_accuracy"] > 0.9
    assert len(manifest.lineage.data_sha256) == 64 and manifest.lineage.parameters["C"] == 1.0
    loaded = load_model(package)
    assert loaded.predict(X[:5]).tolist() == model.predict(X[:5]).tolist()
    proba = loaded.predict_proba(X[:5])
    assert proba is not None and np.allclose(proba, model.predict_proba(X[:5]))


def test_regressor_as_onnx_matches_sklearn(tmp_path: Path) -> None:
    model = LinearRegression().fit(X, Y_REG)
    package = create_package(sklearn_to_onnx(model, 3), X, Y_REG, out_dir=tmp_path / "reg", name="tiny-reg",
                             version="1.0.0", task="regression")
    manifest = read_manifest(package)
    assert manifest.framework == "onnx" and manifest.output.task == "regression"
    predictions = load_model(package).predict(X[:10])
    assert predictions.shape == (10,)
    assert np.allclose(predictions, model.predict(X[:10]), atol=1e-4)


def test_examples_are_valid_packages() -> None:
    root = Path(__file__).resolve().parents[2] / "examples"
    iris = verify_package(root / "iris-classifier", load=True)
    diabetes = verify_package(root / "diabetes-regressor", load=True)
    churn = verify_package(root / "churn-classifier", load=True)
    assert (churn.model_input, churn.serving) == ("dataframe", None)
    assert (iris.framework, iris.output.task) == ("sklearn", "classification")
    assert (diabetes.framework, diabetes.output.task) == ("onnx", "regression")


def test_hash_mismatch_is_refused(iris_package: Path) -> None:
    with open(iris_package / "model.skops", "ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(PackageError, match="corrupt: sha256"):
        verify_package(iris_package)
    with pytest.raises(PackageError, match="corrupt"):
        load_model(iris_package)


def test_missing_artifact_is_refused(iris_package: Path) -> None:
    (iris_package / "model.skops").unlink()
    with pytest.raises(PackageError, match=r"artifact model.skops .* is missing"):
        verify_package(iris_package)


def test_missing_manifest_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PackageError, match=r"kaizen\.yaml is missing"):
        verify_package(tmp_path)


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"framework": "tensorflow"}, "framework"),
        ({"version": "one"}, "version"),
        ({"name": "Bad Name"}, "name"),
        ({"artifact_sha256": "xyz"}, "artifact_sha256"),
        ({"format": "onnx"}, "does not belong to framework"),
        ({"inputs": []}, "inputs"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_invalid_manifest_names_the_field(iris_package: Path, changes: dict[str, object], named: str) -> None:
    with pytest.raises(PackageError, match=named):
        verify_package(broken.rewrite_manifest(iris_package, **changes))


def test_unparseable_manifest(iris_package: Path) -> None:
    (iris_package / "kaizen.yaml").write_text("name: [unclosed")
    with pytest.raises(PackageError, match="not valid YAML"):
        verify_package(iris_package)


def test_schema_artifact_disagreement(iris_package: Path) -> None:
    data = yaml.safe_load((iris_package / "kaizen.yaml").read_text())
    data["inputs"] = data["inputs"][:3]
    data["baseline"]["features"].pop("petal_width")
    (iris_package / "kaizen.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(PackageError, match="schema/artifact disagreement: the ONNX input takes 4 features"):
        load_model(iris_package)
    with pytest.raises(PackageError, match="schema/artifact disagreement: the model takes 4 features"):
        load_model(iris_package, serve_with="source")


def test_label_disagreement(iris_package: Path) -> None:
    data = yaml.safe_load((iris_package / "kaizen.yaml").read_text())
    data["output"]["labels"] = ["a", "b", "c"]
    (iris_package / "kaizen.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(PackageError, match="classes"):
        load_model(iris_package, serve_with="source")
    from model_packages.serving.drift import DriftMonitor
    from model_packages.serving.runner import Runner

    compiled = load_model(iris_package)
    with pytest.raises(PackageError, match=r"predicts '\w+', which is not in output\.labels"):
        Runner(compiled, DriftMonitor(compiled.manifest)).warm_up()


def test_pickle_refused_unless_trusted(tmp_path: Path) -> None:
    model = DummyClassifier().fit(X, Y_CLASS)
    with pytest.raises(PackageError, match="trusted"):
        create_package(model, X, Y_CLASS, out_dir=tmp_path / "p", name="p", version="1.0.0",
                       artifact_format="pickle")
    assert not (tmp_path / "p").exists()
    package = create_package(model, X, Y_CLASS, out_dir=tmp_path / "p", name="p", version="1.0.0",
                             artifact_format="pickle", trusted=True)
    assert load_model(package).predict(X[:2]).shape == (2,)
    with pytest.raises(PackageError, match=r"refusing to load model\.pkl"):
        load_model(broken.untrusted_pickle(package))


def test_pickle_never_loaded_without_trust(tmp_path: Path) -> None:
    """A malicious pickle named in an untrusted package is refused before it is unpickled."""
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (Path.touch, (str(marker),))  # type: ignore[return-value]

    package = create_package(DummyClassifier().fit(X, Y_CLASS), X, Y_CLASS, out_dir=tmp_path / "e", name="e",
                             version="1.0.0", artifact_format="pickle", trusted=True)
    broken.untrusted_pickle(broken.swapped_artifact(package, pickle.dumps(Exploit())))
    with pytest.raises(PackageError, match="refusing"):
        load_model(package)
    assert not marker.exists()


def test_corrupt_onnx_is_refused(diabetes_package: Path) -> None:
    with pytest.raises(PackageError, match="not a loadable ONNX model"):
        load_model(broken.swapped_artifact(diabetes_package, b"not an onnx model"))


def test_create_refuses_to_clobber(tmp_path: Path) -> None:
    model = LinearRegression().fit(X, Y_REG)
    create_package(model, X, Y_REG, out_dir=tmp_path / "r", name="r", version="1.0.0")
    with pytest.raises(PackageError, match="already exists"):
        create_package(model, X, Y_REG, out_dir=tmp_path / "r", name="r", version="1.0.1")
    assert read_manifest(tmp_path / "r").version == "1.0.0"


def test_feature_spec_rules() -> None:
    with pytest.raises(ValueError, match="minimum"):
        FeatureSpec(name="x", minimum=2, maximum=1)
    with pytest.raises(ValueError, match="categories"):
        FeatureSpec(name="x", dtype="categorical")


def test_describe_package(iris_package: Path) -> None:
    summary = describe_package(iris_package)
    assert summary["name"] == "iris-classifier" and summary["artifact_bytes"] > 1000
    assert [f["name"] for f in summary["inputs"]][:2] == ["sepal_length", "sepal_width"]


def test_cli_package_and_inspect(tmp_path: Path) -> None:
    import skops.io

    model = LogisticRegression().fit(X, Y_CLASS)
    skops.io.dump(model, tmp_path / "model.skops")
    rows = ["a,b,c,label"] + [f"{r[0]},{r[1]},{r[2]},{y}" for r, y in zip(X, Y_CLASS, strict=True)]
    (tmp_path / "train.csv").write_text("\n".join(rows))
    runner = CliRunner()
    result = runner.invoke(app, ["package", str(tmp_path / "model.skops"), "--data", str(tmp_path / "train.csv"),
                                 "--target", "label", "--name", "cli-model", "--version", "2.0.0",
                                 "--out", str(tmp_path / "pkg")])
    assert result.exit_code == 0, result.output
    manifest = verify_package(tmp_path / "pkg", load=True)
    assert manifest.feature_names == ["a", "b", "c"] and manifest.output.labels == ["no", "yes"]
    shown = runner.invoke(app, ["inspect", str(tmp_path / "pkg"), "--json"])
    assert shown.exit_code == 0 and '"cli-model"' in shown.output
    bad = runner.invoke(app, ["package", str(tmp_path / "model.pkl"), "--data", str(tmp_path / "train.csv"),
                              "--name", "x", "--version", "1.0.0", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 1 and "pickle" in bad.output
    missing = runner.invoke(app, ["inspect", str(tmp_path / "nowhere")])
    assert missing.exit_code == 1 and "kaizen.yaml is missing" in missing.output


def test_skops_allow_list(tmp_path: Path) -> None:
    """scikit-learn estimators and numpy ufuncs load; any other function needs trust."""
    import operator

    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    safe = make_pipeline(FunctionTransformer(np.abs), LinearRegression()).fit(X, Y_REG)
    package = create_package(safe, X, Y_REG, out_dir=tmp_path / "safe", name="safe", version="1.0.0")
    assert np.allclose(load_model(package).predict(X[:3]), safe.predict(X[:3]))

    risky = make_pipeline(FunctionTransformer(operator.neg), LinearRegression()).fit(X, Y_REG)
    with pytest.raises(PackageError, match=r"outside Kaizen.s skops allow-list .*: _operator\.neg"):
        create_package(risky, X, Y_REG, out_dir=tmp_path / "risky", name="risky", version="1.0.0")
    assert not (tmp_path / "risky").exists()
    trusted = create_package(risky, X, Y_REG, out_dir=tmp_path / "risky", name="risky", version="1.0.0",
                             trusted=True)
    assert load_model(trusted).predict(X[:1]).shape == (1,)


def test_copy_without_serving_artifact(iris_package: Path, tmp_path: Path) -> None:
    from model_packages.package import copy_without_serving_artifact

    copy = copy_without_serving_artifact(iris_package, tmp_path / "source-only")
    assert read_manifest(copy).serving is None and not (copy / "serving.onnx").exists()
    assert type(load_model(copy)).__name__ == "SklearnModel"
    assert read_manifest(iris_package).serving is not None


def test_serve_with_comes_from_the_settings_not_the_environment(iris_package: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """KAIZEN_SERVE_WITH is read by serving/settings.py (and the batch entry point's arguments), then
    passed down; load_model itself no longer reads it."""
    import json
    from typing import Any

    from model_packages.serving.runtime import build_runner
    from model_packages.serving.settings import Settings, SettingsError

    monkeypatch.setenv("KAIZEN_SERVE_WITH", "source")
    assert type(load_model(iris_package)).__name__ == "OnnxModel"  # the library ignores the environment
    assert Settings.from_env({}).serve_with == "compiled"
    settings = Settings.from_env({"KAIZEN_SERVE_WITH": "source", "KAIZEN_MODEL_DIR": str(iris_package)})
    assert settings.serve_with == "source"
    assert type(build_runner(settings).model).__name__ == "SklearnModel"
    assert type(build_runner(Settings(model_dir=iris_package)).model).__name__ == "OnnxModel"
    with pytest.raises(SettingsError, match="KAIZEN_SERVE_WITH='onnx': use compiled or source"):
        Settings.from_env({"KAIZEN_SERVE_WITH": "onnx"})
    from model_packages.batch import entry, job

    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2})
                    + "\n")
    loaded: list[str] = []

    def opened(*args: Any, **kwargs: Any) -> job.BatchJob:  # the real job; its model's kind noted
        batch = job.open_job(*args, **kwargs)
        loaded.append(type(batch.runner.model).__name__)
        return batch

    monkeypatch.setattr(entry, "open_job", opened)
    argv = [str(rows), "--model-dir", str(iris_package), "--out"]
    assert entry.main([*argv, str(tmp_path / "a")]) == 0  # $KAIZEN_SERVE_WITH=source, set above
    assert entry.main([*argv, str(tmp_path / "b"), "--serve-with", "compiled"]) == 0
    monkeypatch.setenv("KAIZEN_SERVE_WITH", "onnx")
    assert entry.main([*argv, str(tmp_path / "c")]) == 2
    assert loaded == ["SklearnModel", "OnnxModel"]


def test_no_module_uses_another_modules_private_names() -> None:
    """Private API stays private: cli.py took loading._load_skops, trainer.py context._quote..."""
    import ast

    import model_packages

    src = Path(model_packages.__file__).parent
    known = {("serving/tensors.py", "model_packages.serving.codecs._v2_tensor")}  # the serving runtime's, to untangle
    found = set()
    for path in sorted(src.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("model_packages"):
                found |= {(path.relative_to(src).as_posix(), f"{node.module}.{a.name}") for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")}
    assert found <= known, sorted(found - known)
