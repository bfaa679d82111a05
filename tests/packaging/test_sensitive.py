"""`sensitive: true` inputs: set at packaging time, their baseline keeps counts only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from model_packages.errors import PackageError
from model_packages.manifest import read_manifest
from model_packages.package import create_package


def _iris() -> tuple[np.ndarray, np.ndarray, list[str]]:
    from sklearn.datasets import load_iris

    data: Any = load_iris()
    return data.data, np.array(data.target_names)[data.target], ["sl", "sw", "pl", "pw"]


def test_sensitive_inputs_are_marked_and_their_baseline_holds_only_counts(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    x, y, names = _iris()
    model = LogisticRegression(max_iter=500).fit(x, y)
    path = create_package(model, x, y, out_dir=tmp_path / "p", name="iris-s", version="1.0.0", feature_names=names,
                          compile_onnx=False, sensitive=["pw"])
    manifest = read_manifest(path)
    assert [s.name for s in manifest.inputs if s.sensitive] == ["pw"]
    secret = manifest.baseline.features["pw"]
    assert (secret.count, secret.missing) == (150, 0)
    assert secret.mean is None and not secret.quantiles and not secret.bin_edges and not secret.bin_fractions
    assert manifest.baseline.features["pl"].bin_fractions  # the others keep their statistics
    text = (path / "kaizen.yaml").read_text()
    assert "sensitive: true" in text


def test_unknown_sensitive_name_is_refused(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    x, y, names = _iris()
    model = LogisticRegression(max_iter=500).fit(x, y)
    with pytest.raises(PackageError, match="sensitive feature 'ssn' is not an input"):
        create_package(model, x, y, out_dir=tmp_path / "p", name="iris-s", version="1.0.0", feature_names=names,
                       compile_onnx=False, sensitive=["ssn"])
    assert not (tmp_path / "p").exists()


def test_kaizen_package_sensitive_option(tmp_path: Path) -> None:
    import pandas as pd
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression
    from typer.testing import CliRunner

    from model_packages.cli import app

    x, y, names = _iris()
    sio.dump(LogisticRegression(max_iter=500).fit(pd.DataFrame(x, columns=names), y), tmp_path / "m.skops")
    pd.DataFrame(x, columns=names).assign(species=y).to_csv(tmp_path / "d.csv", index=False)
    result = CliRunner().invoke(app, ["package", str(tmp_path / "m.skops"), "--data", str(tmp_path / "d.csv"),
                                      "--target", "species", "--name", "iris-s", "--version", "1.0.0",
                                      "--out", str(tmp_path / "p"), "--sensitive", "pw"])
    assert result.exit_code == 0, result.output
    assert [s.name for s in read_manifest(tmp_path / "p").inputs if s.sensitive] == ["pw"]
