"""A small package with a prediction baseline, and shifted rows to report on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest


@pytest.fixture(scope="session")
def iris_pkg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Iris, logistic regression, packaged with its prediction baseline (no ONNX compile: quick)."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from model_packages.package import create_package

    data: Any = load_iris(as_frame=True)
    x = data.data.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    y = np.array(data.target_names)[data.target]
    model = LogisticRegression(max_iter=500).fit(x.to_numpy(), y)
    out = tmp_path_factory.mktemp("pkg") / "iris-report"
    return create_package(model, x.to_numpy(), y, out_dir=out, name="iris-report", version="1.0.0",
                          feature_names=list(x.columns), compile_onnx=False,
                          ranges=dict.fromkeys(x.columns, (0.0, 100.0)))


def shifted_rows(n: int, seed: int = 1, shift: float = 0.0) -> pd.DataFrame:
    """Rows around the iris training distribution; `shift` moves petal_length (cm)."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "sepal_length": rng.normal(5.8, 0.8, n).clip(4.0, 8.0).round(1),
        "sepal_width": rng.normal(3.0, 0.4, n).clip(2.0, 4.5).round(1),
        "petal_length": (rng.normal(3.8, 1.7, n) + shift).clip(1.0, 9.0).round(1),
        "petal_width": rng.normal(1.2, 0.7, n).clip(0.1, 2.5).round(1),
    })
