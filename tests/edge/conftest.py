"""Fixtures of the edge tests: a float32 network package (something to quantise) and the example."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def mlp_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small iris MLP as a float32 ONNX package: its MatMul weights are what int8 quantises."""
    from sklearn.datasets import load_iris
    from sklearn.neural_network import MLPClassifier

    from model_packages.compile import sklearn_to_onnx
    from model_packages.package import create_package

    x, target = load_iris(return_X_y=True)
    y = np.array(["setosa", "versicolor", "virginica"])[target]
    mlp = MLPClassifier(hidden_layer_sizes=(32,), max_iter=3000, random_state=0).fit(x, y)
    return create_package(sklearn_to_onnx(mlp, 4), x, y, out_dir=tmp_path_factory.mktemp("mlp") / "iris-mlp",
                          name="iris-mlp", version="1.0.0", task="classification",
                          labels=[str(c) for c in mlp.classes_],
                          feature_names=["sepal_length", "sepal_width", "petal_length", "petal_width"])
