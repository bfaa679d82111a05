"""Fixed-size counters per feature, on the training baseline's bins (numpy and stdlib only).

Every feature's counter row starts with a `missing` slot and covers every possible value, so each
row of a window sums to the window's row count:

- numeric / integer: `[missing, under-range, bin 0 .. bin E, over-range]`: the baseline's decile
  edges (`bin_edges`) split [training min, training max]; values below the minimum or above the
  maximum count as under- and over-range.
- boolean: `[missing, false, true]`.
- categorical (strings): `[missing, category..., unseen]`.
- `__prediction__`: label shares for classifiers (categorical), value deciles for regressors (numeric).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Literal

import numpy as np

from model_packages.manifest import FeatureBaseline, FeatureSpec, Manifest

PREDICTION = "__prediction__"
BIN_PRIOR = 0.5  # pseudo-count per baseline bin (Jeffreys), so a bin never has probability 0
RANGE_PRIOR = 1.0  # P(a new value is below the minimum of N training values) = 1 / (N + 1)

Kind = Literal["numeric", "boolean", "categorical"]


@dataclass(frozen=True)
class FeatureLayout:
    """How one feature's values map onto its counter slots, and the baseline's slot probabilities."""

    name: str
    kind: Kind
    column: int  # index in the input matrix; -1 for the prediction
    labels: list[str]  # one per slot, for humans and reports
    expected: np.ndarray  # baseline probability of each slot (sums to 1)
    edges: np.ndarray = field(default_factory=lambda: np.zeros(0))  # numeric: [min, inner edges..., max]
    inner: np.ndarray = field(default_factory=lambda: np.zeros(0))  # numeric: the baseline's bin_edges
    std: float | None = None
    index: dict[str, int] = field(default_factory=dict)  # categorical: value -> slot
    #: training rows plus prior pseudo-counts behind `expected` (the baseline's own sampling error)
    weight: float = 0.0

    @property
    def size(self) -> int:
        return int(self.expected.size)

    def count(self, values: np.ndarray | Sequence[object]) -> np.ndarray:
        """Counts of `values` (one column of a batch) in this feature's slots."""
        if self.kind == "categorical":
            return self._count_categories(values)
        array = _floats(values)
        missing = np.isnan(array)
        present = array[~missing]
        counts = np.zeros(self.size, dtype=np.int64)
        counts[0] = int(missing.sum())
        if self.kind == "boolean":
            ones = int(np.count_nonzero(present > 0.5))
            counts[1] = present.size - ones
            counts[2] = ones
            return counts
        low, high = self.edges[0], self.edges[-1]
        under = present < low
        over = present > high
        inside = present[~(under | over)]
        counts[1] = int(under.sum())
        counts[-1] = int(over.sum())
        slots = np.searchsorted(self.inner, inside, side="right")
        counts[2:-1] += np.bincount(slots, minlength=self.inner.size + 1)[: self.inner.size + 1]
        return counts

    def _count_categories(self, values: np.ndarray | Sequence[object]) -> np.ndarray:
        counts = np.zeros(self.size, dtype=np.int64)
        unseen = self.size - 1
        index = self.index
        slots = [0 if v is None or (isinstance(v, float) and v != v) else index.get(str(v), unseen)
                 for v in (values.tolist() if isinstance(values, np.ndarray) else values)]
        if slots:
            counts += np.bincount(np.asarray(slots, dtype=np.int64), minlength=self.size)
        return counts


def _floats(values: np.ndarray | Sequence[object]) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype.kind in "fiub":
        return array.astype(np.float64, copy=False)
    return np.array([np.nan if v is None else float(v) for v in array.tolist()], dtype=np.float64)  # type: ignore[arg-type]


def _normalise(weights: list[float]) -> tuple[np.ndarray, float]:
    array = np.asarray(weights, dtype=np.float64)
    return array / array.sum(), float(array.sum())


def numeric_layout(name: str, column: int, base: FeatureBaseline) -> FeatureLayout | None:
    if base.count <= 0 or not base.bin_fractions or base.min is None or base.max is None:
        return None
    inner = np.asarray(base.bin_edges, dtype=np.float64)
    counts = [f * base.count for f in base.bin_fractions]
    weights = [base.missing + BIN_PRIOR, RANGE_PRIOR, *(c + BIN_PRIOR for c in counts), RANGE_PRIOR]
    edges = np.concatenate([[base.min], inner, [base.max]])
    labels = ["missing", f"< {base.min:g}"]
    bounds = [base.min, *base.bin_edges, base.max]
    labels += [f"[{a:g}, {b:g})" for a, b in pairwise(bounds)]
    labels += [f"> {base.max:g}"]
    expected, weight = _normalise(weights)
    return FeatureLayout(name, "numeric", column, labels, expected, edges=edges, inner=inner,
                         std=base.std if base.std else None, weight=weight)


def boolean_layout(name: str, column: int, base: FeatureBaseline) -> FeatureLayout | None:
    if base.count <= 0 or base.mean is None:
        return None
    true = base.mean * base.count
    weights = [base.missing + BIN_PRIOR, base.count - true + BIN_PRIOR, true + BIN_PRIOR]
    expected, weight = _normalise(weights)
    return FeatureLayout(name, "boolean", column, ["missing", "false", "true"], expected, weight=weight)


def categorical_layout(name: str, column: int, base: FeatureBaseline,
                       categories: Sequence[object] | None = None) -> FeatureLayout | None:
    if base.count <= 0 or not base.category_fractions:
        return None
    names = [str(c) for c in categories] if categories else list(base.category_fractions)
    names += [c for c in base.category_fractions if c not in names]
    weights = [base.missing + BIN_PRIOR]
    weights += [base.category_fractions.get(c, 0.0) * base.count + BIN_PRIOR for c in names]
    weights.append(BIN_PRIOR)  # unseen
    index = {c: k + 1 for k, c in enumerate(names)}
    expected, weight = _normalise(weights)
    return FeatureLayout(name, "categorical", column, ["missing", *names, "unseen"], expected,
                         index=index, weight=weight)


def feature_layouts(manifest: Manifest, *, prediction: bool = True) -> list[FeatureLayout]:
    """One layout per input feature that has a usable baseline, plus `__prediction__` when the
    manifest records a prediction baseline (and `prediction` is true)."""
    layouts: list[FeatureLayout] = []
    for column, spec in enumerate(manifest.inputs):
        base = manifest.baseline.features.get(spec.name)
        if base is None:
            continue
        layout = _layout(spec, column, base)
        if layout is not None:
            layouts.append(layout)
    base = manifest.baseline.prediction
    if prediction and base is not None:
        if manifest.output.task == "classification":
            layout = categorical_layout(PREDICTION, -1, base, manifest.output.labels)
        else:
            layout = numeric_layout(PREDICTION, -1, base)
        if layout is not None:
            layouts.append(layout)
    return layouts


def _layout(spec: FeatureSpec, column: int, base: FeatureBaseline) -> FeatureLayout | None:
    if spec.dtype == "categorical" and not spec.numeric_categories:
        return categorical_layout(spec.name, column, base, spec.categories)
    if spec.dtype == "boolean":
        return boolean_layout(spec.name, column, base)
    return numeric_layout(spec.name, column, base)
