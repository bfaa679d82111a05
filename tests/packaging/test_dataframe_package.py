"""Packaging DataFrame models: CSV and Parquet through pandas, the CLI's column options, and one
clear message naming the column when the model and the data disagree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder
from typer.testing import CliRunner

from examples.train import churn_frame, churn_pipeline
from model_packages.cli import app
from model_packages.errors import PackageError
from model_packages.loading import load_model
from model_packages.manifest import read_manifest
from model_packages.package import create_package


@pytest.fixture(scope="module")
def churn(tmp_path_factory: pytest.TempPathFactory) -> tuple[Pipeline, pd.DataFrame, pd.Series, Path]:
    frame, churned = churn_frame(rows=300)
    model = churn_pipeline().fit(frame, churned)
    root = tmp_path_factory.mktemp("cli")
    sio.dump(model, root / "model.skops")
    return model, frame, churned, root


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, " ".join(result.output.split())


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_cli_packages_csv_and_parquet(churn: tuple, tmp_path: Path, suffix: str) -> None:
    model, frame, churned, root = churn
    data = frame.assign(customer_id=[f"c{i}" for i in range(len(frame))], churned=churned)
    path = tmp_path / f"train.{suffix}"
    if suffix == "csv":
        data.to_csv(path, index=False)
    else:
        data.to_parquet(path)
    code, output = _cli("package", str(root / "model.skops"), "--data", str(path), "--target", "churned",
                        "--drop", "customer_id", "--name", "churn", "--version", "1.0.0",
                        "--out", str(tmp_path / "pkg"))
    assert code == 0, output
    manifest = read_manifest(tmp_path / "pkg")
    assert manifest.model_input == "dataframe" and manifest.feature_names == list(frame.columns)
    assert manifest.baseline.metrics["training_accuracy"] == pytest.approx(model.score(frame, churned))
    rows = np.array([[12.0, np.nan, "basic"], [30.0, 70.0, "gold"]], dtype=object)
    expected = model.predict(pd.DataFrame(rows, columns=frame.columns).astype(
        {"tenure_months": float, "monthly_charges": float}))
    assert load_model(tmp_path / "pkg").predict(rows).tolist() == expected.tolist()
    code, output = _cli("inspect", str(tmp_path / "pkg"), "--load")
    assert code == 0 and "churn" in output


def test_cli_refuses_disagreement_naming_the_column(churn: tuple, tmp_path: Path) -> None:
    _, frame, churned, root = churn
    path = tmp_path / "train.csv"
    frame.assign(customer_id=range(len(frame)), churned=churned).to_csv(path, index=False)
    base = ["package", str(root / "model.skops"), "--data", str(path), "--name", "churn", "--version", "1.0.0",
            "--out", str(tmp_path / "pkg")]
    code, output = _cli(*base, "--target", "churned")
    assert code == 1 and "column 'customer_id' is in the training data but the model was not fitted on it" in output
    code, output = _cli(*base, "--target", "churned", "--drop", "customer_id", "--drop", "plan")
    assert code == 1 and "fitted on column 'plan', which the training data lacks" in output
    code, output = _cli(*base, "--target", "nope")
    assert code == 1 and "--target 'nope': no such column" in output
    code, output = _cli(*base, "--target", "churned", "--drop", "customer_id", "--categorical", "nope")
    assert code == 1 and "--categorical 'nope': no such column" in output
    assert not (tmp_path / "pkg").exists()


def test_categorical_option_reads_codes_as_strings(tmp_path: Path) -> None:
    """A numeric code column the model one-hot encodes as strings: --categorical makes it one."""
    frame = pd.DataFrame({"region": ["1", "2", "3", "10"] * 10, "x": np.linspace(0, 1, 40)})
    y = (frame["x"] > 0.5).astype(int)
    model = Pipeline([("c", ColumnTransformer([("r", OneHotEncoder(), ["region"])], remainder="passthrough")),
                      ("m", LogisticRegression())]).fit(frame, y)
    sio.dump(model, tmp_path / "model.skops")
    frame.assign(y=y).to_csv(tmp_path / "train.csv", index=False)
    base = ["package", str(tmp_path / "model.skops"), "--data", str(tmp_path / "train.csv"), "--target", "y",
            "--name", "codes", "--version", "1.0.0", "--out", str(tmp_path / "pkg")]
    code, output = _cli(*base)
    assert code == 1 and "column 'region'" in output
    code, output = _cli(*base, "--categorical", "region")
    assert code == 0, output
    region = read_manifest(tmp_path / "pkg").inputs[0]
    assert region.dtype == "categorical" and region.categories == ["1", "10", "2", "3"]


def test_api_takes_dataframes_dicts_and_arrays(churn: tuple, tmp_path: Path) -> None:
    model, frame, churned, _ = churn
    as_dict = {c: frame[c].to_numpy() for c in frame.columns}
    reordered = frame[["plan", "monthly_charges", "tenure_months"]]
    for name, x in (("frame", frame), ("dict", as_dict), ("reordered", reordered)):
        package = create_package(model, x, churned, out_dir=tmp_path / name, name=name, version="1.0.0")
        manifest = read_manifest(package)
        assert manifest.feature_names == list(frame.columns), name
        assert manifest.model_input == "dataframe" and manifest.inputs[2].allow_unknown
    x = np.random.default_rng(0).normal(size=(40, 3))
    y = (x[:, 0] > 0).astype(int)
    array_model = LogisticRegression().fit(x, y)
    with pytest.raises(PackageError, match="the model takes 3 features but the training data has 2 columns"):
        create_package(array_model, x[:, :2], y, out_dir=tmp_path / "narrow", name="narrow", version="1.0.0")
