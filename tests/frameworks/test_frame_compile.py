"""DataFrame pipelines with string columns compile to a graph with one input per column.

The most common tabular model (ColumnTransformer: imputed, scaled numbers and a one-hot string
column with handle_unknown="ignore"; then LogisticRegression or a tree ensemble) is checked on
held-out rows the package never saw, unseen categories and missing values included, against the
pipeline's own predict/predict_proba; a part the converter does not know leaves the model to
scikit-learn, and `kaizen package` / `kaizen inspect` say why."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, SplineTransformer, StandardScaler
from typer.testing import CliRunner

from examples.train import churn_frame
from model_packages.cli import app as cli
from model_packages.compile import TREE_RELATIVE_TOLERANCE
from model_packages.loading import load_model
from model_packages.manifest import read_manifest
from model_packages.package import create_package
from model_packages.serving.schema import InputSchema

NUMERIC = ["tenure_months", "monthly_charges"]


def _pipeline(final: Any, numeric: Any = None) -> Pipeline:
    columns = ColumnTransformer([
        ("numeric", make_pipeline(SimpleImputer(strategy="median"), numeric or StandardScaler()), NUMERIC),
        ("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
    ])
    return Pipeline([("columns", columns), ("model", final)])


def _held_out() -> pd.DataFrame:
    """Rows from another seed, with unseen plans, missing plans and numeric gaps."""
    frame, _ = churn_frame(rows=300, seed=7)
    frame = frame.astype({"plan": object})
    frame.loc[frame.index[::4], "plan"] = "gold"
    frame.loc[frame.index[1::9], "plan"] = None
    return frame


def _served(package: Path, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None, str]:
    model = load_model(package)
    rows = frame.astype(object).where(frame.notna(), None).to_numpy().tolist()
    matrix = InputSchema(model.manifest).matrix(rows)
    return np.asarray(model.predict(matrix)), model.predict_proba(matrix), type(model).__name__


@pytest.mark.parametrize("final", [LogisticRegression(max_iter=500),
                                   RandomForestClassifier(n_estimators=15, max_depth=5, random_state=0),
                                   HistGradientBoostingClassifier(max_iter=20, random_state=0)],
                         ids=lambda m: type(m).__name__)
def test_column_pipeline_compiles_and_matches_on_held_out_rows(final: Any, tmp_path: Path) -> None:
    frame, churned = churn_frame(rows=400)
    model = _pipeline(final).fit(frame, churned)
    package = create_package(model, frame, churned, out_dir=tmp_path / "pkg", name="churn", version="1.0.0")
    manifest = read_manifest(package)
    assert manifest.compilation is not None and manifest.compilation.compiled, manifest.compilation
    assert manifest.serving is not None and manifest.serving.inputs == "columns"
    test = _held_out()
    assert (test.plan == "gold").sum() > 60 and test.plan.isna().sum() > 30
    assert test[NUMERIC].isna().to_numpy().any(axis=0).all()
    labels, proba, served_by = _served(package, test)
    assert served_by == "OnnxModel"
    want = model.predict(test.astype({"plan": object}).where(test.notna(), np.nan))
    assert labels.tolist() == want.tolist()
    assert proba is not None
    want_proba = model.predict_proba(test.where(test.notna(), np.nan))
    diff = np.abs(proba - want_proba)
    if isinstance(final, LogisticRegression):  # float64 all the way: rounding only
        assert diff.max() <= 1e-12, diff.max()
    else:  # trees: the same leaves, outputs rounded to float32 once (compile.py)
        assert np.all(diff <= 1e-6 + TREE_RELATIVE_TOLERANCE * np.abs(want_proba)), diff.max()


def test_an_unsupported_part_is_served_by_sklearn_and_the_cli_says_why(tmp_path: Path) -> None:
    import skops.io as sio

    frame, churned = churn_frame(rows=200)
    model = _pipeline(LogisticRegression(max_iter=500), numeric=SplineTransformer(n_knots=3)).fit(frame, churned)
    sio.dump(model, tmp_path / "model.skops")
    frame.assign(churned=churned).to_csv(tmp_path / "train.csv", index=False)
    runner = CliRunner()
    packaged = runner.invoke(cli, ["package", str(tmp_path / "model.skops"), "--data", str(tmp_path / "train.csv"),
                                   "--target", "churned", "--name", "spline", "--version", "1.0.0", "--trusted",
                                   "--out", str(tmp_path / "pkg")])
    assert packaged.exit_code == 0, packaged.output
    output = " ".join(packaged.output.split())
    assert "not compiled:" in output and "SplineTransformer" in output and "sklearn serves the model" in output
    manifest = read_manifest(tmp_path / "pkg")
    assert manifest.serving is None and manifest.compilation is not None
    assert "SplineTransformer" in (manifest.compilation.reason or "")
    inspected = runner.invoke(cli, ["inspect", str(tmp_path / "pkg"), "--load"])
    assert inspected.exit_code == 0, inspected.output
    assert "compiled: False" in inspected.output and "SplineTransformer" in " ".join(inspected.output.split())
    test = _held_out()
    labels, _, served_by = _served(tmp_path / "pkg", test)
    assert served_by == "SklearnModel"
    assert labels.tolist() == model.predict(test.where(test.notna(), np.nan)).tolist()
