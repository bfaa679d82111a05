"""CatBoost models packaged through CatBoost's own ONNX export (no pickle): the package answers
like the model's own predict/predict_proba on rows it never saw."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer

from model_packages.errors import PackageError
from model_packages.loading import load_model
from model_packages.manifest import read_manifest
from model_packages.package import create_package

catboost = pytest.importorskip("catboost")

DATA: Any = load_breast_cancer()
X, Y = DATA.data[:300], DATA.target[:300]
FRESH = DATA.data[300:]


def test_catboost_classifier_matches_on_fresh_rows(tmp_path: Path) -> None:
    model = catboost.CatBoostClassifier(iterations=30, depth=4, verbose=False, thread_count=1,
                                        allow_writing_files=False, random_seed=0)
    model.fit(X, np.where(Y == 1, "benign", "malignant"))
    package = create_package(model, X, None, out_dir=tmp_path / "cb", name="cb", version="1.0.0")
    manifest = read_manifest(package)
    assert (manifest.framework, manifest.format, manifest.output.labels) == ("onnx", "onnx", ["benign", "malignant"])
    assert (package / "model.onnx").is_file() and not list(package.glob("*.cbm"))
    loaded = load_model(package)
    assert loaded.predict(FRESH).tolist() == model.predict(FRESH).tolist()
    proba = loaded.predict_proba(FRESH)
    want = model.predict_proba(FRESH)
    assert proba is not None
    diff = np.abs(proba - want)
    assert np.all(diff <= 1e-6 + 1e-6 * np.abs(want)), diff.max()


def test_catboost_regressor_and_refusals(tmp_path: Path) -> None:
    model = catboost.CatBoostRegressor(iterations=30, depth=4, verbose=False, thread_count=1,
                                       allow_writing_files=False, random_seed=0).fit(X, DATA.data[:300, 0])
    package = create_package(model, X, None, out_dir=tmp_path / "cbr", name="cbr", version="1.0.0")
    got = load_model(package).predict(FRESH)
    want = model.predict(FRESH)
    assert np.all(np.abs(got - want) <= 1e-6 + 1e-6 * np.abs(want)), np.abs(got - want).max()
    import pandas as pd

    frame = pd.DataFrame({"a": X[:, 0], "colour": np.where(Y == 1, "red", "blue")})
    categorical = catboost.CatBoostClassifier(iterations=5, verbose=False, allow_writing_files=False,
                                              cat_features=["colour"]).fit(frame, Y)
    with pytest.raises(PackageError, match="categorical features"):
        create_package(categorical, frame, Y, out_dir=tmp_path / "cat", name="cat", version="1.0.0")
