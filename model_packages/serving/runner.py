"""The small layer between HTTP and the model: validate, observe for drift, predict, shape output."""

from __future__ import annotations

from typing import Any

import numpy as np

from model_packages.errors import PackageError
from model_packages.loading import LoadedModel
from model_packages.manifest import Manifest
from model_packages.serving.codecs import to_json_values
from model_packages.serving.drift import FeatureStats
from model_packages.serving.schema import InputSchema
from model_packages.serving.tensors import TensorSchema


class Runner:
    """Runs validated rows through a loaded model."""

    def __init__(self, model: LoadedModel, stats: FeatureStats) -> None:
        self.model = model
        self.manifest: Manifest = model.manifest
        self.schema = TensorSchema(model.manifest) if model.manifest.tensor_input else InputSchema(model.manifest)
        self.stats = stats
        self.labels = [str(label) for label in model.manifest.output.labels or []]

    def predict_array(self, rows: np.ndarray) -> np.ndarray:
        """Predict and feed the drift statistics (the one place both happen)."""
        self.stats.observe(rows)
        return self.model.predict(rows)

    def predict(self, rows: np.ndarray) -> list[Any]:
        return to_json_values(self.predict_array(rows))

    def predict_proba(self, rows: np.ndarray) -> np.ndarray | None:
        return self.model.predict_proba(rows)

    def predictions_with_probabilities(self, rows: np.ndarray) -> list[dict[str, Any]]:
        """Vertex-style rich predictions: the label and the probability of every label."""
        labels = self.predict(rows)
        proba = self.predict_proba(rows)
        if proba is None:
            return [{"label": label} for label in labels]
        return [
            {"label": label, "probabilities": dict(zip(self.labels, p, strict=False))}
            for label, p in zip(labels, proba.tolist(), strict=True)
        ]

    def warm_up(self) -> None:
        """Predict one typical row (training medians), so the first request pays no lazy costs."""
        if isinstance(self.schema, TensorSchema):
            self._check_answers(self.schema.warm_up_batch())
            return
        if self.manifest.input_example:
            self._check_answers(self.schema.matrix([list(r) for r in self.manifest.input_example]))
            return
        row: list[Any] = []
        for spec in self.manifest.inputs:
            base = self.manifest.baseline.features.get(spec.name)
            if spec.dtype == "categorical" and spec.categories:
                row.append(spec.categories[0])
                continue
            value = base.quantiles.get("0.5") if base else None
            if value is None:
                value = spec.default if spec.default is not None else (spec.minimum or 0.0)
            low = spec.minimum if spec.minimum is not None else -np.inf
            high = spec.maximum if spec.maximum is not None else np.inf
            row.append(float(np.clip(value, low, high)))
        self._check_answers(self.schema.matrix([row]))

    def _check_answers(self, matrix: np.ndarray) -> None:
        predicted = to_json_values(self.model.predict(matrix))
        proba = self.model.predict_proba(matrix)
        if self.manifest.output.task == "classification":
            unknown = [p for p in predicted if str(p) not in self.labels]
            if unknown:
                raise PackageError(
                    f"schema/artifact disagreement: the model predicts {str(unknown[0])!r}, "
                    f"which is not in output.labels {self.labels}"
                )
            if proba is not None and proba.shape[1] != len(self.labels):
                raise PackageError(
                    f"schema/artifact disagreement: the model gives {proba.shape[1]} probabilities "
                    f"for {len(self.labels)} output.labels"
                )
