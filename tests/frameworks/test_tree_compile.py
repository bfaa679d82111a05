"""Tree ensembles get a compiled ONNX serving artifact that matches them on every training row."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn import ensemble
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from typer.testing import CliRunner

from model_packages.cli import app
from model_packages.loading import load_model
from model_packages.manifest import read_manifest
from model_packages.package import create_package

IRIS: Any = load_iris(return_X_y=True)
CANCER: Any = load_breast_cancer(return_X_y=True)
DIABETES: Any = load_diabetes(return_X_y=True)

CLASSIFIERS = [
    ensemble.GradientBoostingClassifier(n_estimators=20, random_state=0),
    ensemble.RandomForestClassifier(n_estimators=15, random_state=0),
    ensemble.ExtraTreesClassifier(n_estimators=15, random_state=0),
    ensemble.HistGradientBoostingClassifier(max_iter=20, random_state=0),
]
REGRESSORS = [
    ensemble.GradientBoostingRegressor(n_estimators=20, random_state=0),
    ensemble.RandomForestRegressor(n_estimators=10, random_state=0),
    ensemble.ExtraTreesRegressor(n_estimators=10, random_state=0),
    ensemble.HistGradientBoostingRegressor(max_iter=20, random_state=0),
]


def _fresh(x: np.ndarray, n: int = 300) -> np.ndarray:
    """Rows the model never saw, some of them exactly on training values (split neighbours)."""
    rng = np.random.default_rng(1)
    rows = x[rng.integers(0, len(x), n)] + rng.normal(scale=x.std(axis=0) * 0.3, size=(n, x.shape[1]))
    rows[: n // 3] = x[rng.integers(0, len(x), n // 3)]
    return rows


@pytest.mark.parametrize("data", [IRIS, CANCER], ids=["iris", "cancer"])
@pytest.mark.parametrize("estimator", CLASSIFIERS, ids=lambda e: type(e).__name__)
def test_tree_classifiers_compile_with_parity(tmp_path: Path, estimator: Any, data: Any) -> None:
    x, y = data
    model = estimator.fit(x, y)
    package = create_package(model, x, y, out_dir=tmp_path / "p", name="trees", version="1.0.0")
    manifest = read_manifest(package)
    assert manifest.compilation is not None and manifest.compilation.compiled, manifest.compilation
    assert manifest.serving is not None and manifest.serving.parity_rows == len(x)
    compiled = load_model(package)
    assert type(compiled).__name__ == "OnnxModel"
    fresh = _fresh(x)
    assert compiled.predict(fresh).tolist() == model.predict(fresh).tolist()
    proba = compiled.predict_proba(fresh)
    assert proba is not None
    assert np.allclose(proba, model.predict_proba(fresh), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("estimator", REGRESSORS, ids=lambda e: type(e).__name__)
def test_tree_regressors_compile_with_parity(tmp_path: Path, estimator: Any) -> None:
    x, y = DIABETES
    model = estimator.fit(x, y)
    package = create_package(model, x, y, out_dir=tmp_path / "p", name="trees", version="1.0.0")
    manifest = read_manifest(package)
    assert manifest.compilation is not None and manifest.compilation.compiled, manifest.compilation
    fresh = _fresh(x)
    assert np.allclose(load_model(package).predict(fresh), model.predict(fresh), rtol=1e-6, atol=1e-6)


def test_pipeline_with_trees_compiles(tmp_path: Path) -> None:
    x, y = CANCER
    model = make_pipeline(StandardScaler(), ensemble.GradientBoostingClassifier(n_estimators=10)).fit(x, y)
    package = create_package(model, x, y, out_dir=tmp_path / "p", name="trees", version="1.0.0")
    assert read_manifest(package).serving is not None
    assert load_model(package).predict(x).tolist() == model.predict(x).tolist()


def test_model_that_is_not_compiled_says_why(tmp_path: Path) -> None:
    """A categorical HistGradientBoosting model: skl2onnx ignores categorical splits, so the
    parity check fails; the manifest says so, and scikit-learn serves it."""
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 6, 400).astype(float)
    size = rng.normal(size=400)
    x = np.column_stack([colour, size])
    y = (np.isin(colour, [1, 4]) ^ (size > 1.2)).astype(int)
    model = ensemble.HistGradientBoostingClassifier(categorical_features=[0], max_iter=20).fit(x, y)  # type: ignore[arg-type]
    out = create_package(model, x, y, out_dir=tmp_path / "pkg", name="hgb-cat", version="1.0.0", trusted=True)
    manifest = read_manifest(out)
    assert manifest.serving is None
    assert manifest.compilation is not None and not manifest.compilation.compiled
    assert manifest.compilation.reason and "differ" in manifest.compilation.reason
    loaded = load_model(out)
    assert type(loaded).__name__ == "SklearnModel"
    assert loaded.predict(x).tolist() == model.predict(x).tolist()


def test_cli_prints_why_a_model_is_not_compiled(tmp_path: Path) -> None:
    import skops.io
    from sklearn.semi_supervised import LabelPropagation

    x, y = IRIS
    skops.io.dump(LabelPropagation().fit(x, y), tmp_path / "lp.skops")
    data = tmp_path / "train.csv"
    data.write_text("a,b,c,d,y\n" + "\n".join(",".join(map(str, [*r, t])) for r, t in zip(x, y, strict=True)))
    out = tmp_path / "pkg"
    result = CliRunner().invoke(app, ["package", str(tmp_path / "lp.skops"), "--data", str(data), "--target", "y",
                                      "--name", "lp", "--version", "1.0.0", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "not compiled:" in result.output and "LabelPropagation cannot be converted to ONNX" in result.output
    reason = read_manifest(out).compilation.reason  # type: ignore[union-attr]
    assert reason and "LabelPropagation" in reason
    shown = CliRunner().invoke(app, ["inspect", str(out)])
    assert "compiled: False" in shown.output and "LabelPropagation" in shown.output
