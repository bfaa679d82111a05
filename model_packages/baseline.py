"""Training baseline: per-feature statistics that live traffic is compared against."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from model_packages.manifest import Baseline, FeatureBaseline, FeatureSpec, Manifest

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
BINS = 10


def _numeric_baseline(values: np.ndarray) -> FeatureBaseline:
    present = values[~np.isnan(values)]
    missing = int(values.size - present.size)
    if present.size == 0:
        return FeatureBaseline(count=0, missing=missing)
    # Decile edges from the training data: each bin holds about a tenth of the reference.
    edges = np.unique(np.quantile(present, np.linspace(0, 1, BINS + 1)[1:-1]))
    bins = np.searchsorted(edges, present, side="right")
    counts = np.bincount(bins, minlength=edges.size + 1)
    return FeatureBaseline(
        count=int(present.size),
        missing=missing,
        mean=float(present.mean()),
        std=float(present.std()),
        min=float(present.min()),
        max=float(present.max()),
        quantiles={f"{q:g}": float(v) for q, v in zip(QUANTILES, np.quantile(present, QUANTILES), strict=True)},
        bin_edges=[float(e) for e in edges],
        bin_fractions=[float(c) / present.size for c in counts],
    )


def _categorical_baseline(values: Sequence[object]) -> FeatureBaseline:
    present = [v for v in values if v is not None and not (isinstance(v, float) and v != v)]
    total = len(present)
    fractions: dict[str, float] = {}
    for value in present:
        key = str(value)
        fractions[key] = fractions.get(key, 0.0) + 1.0
    return FeatureBaseline(
        count=total,
        missing=len(values) - total,
        category_fractions={k: v / total for k, v in sorted(fractions.items())} if total else {},
    )


def compute_baseline(
    columns: Mapping[str, Sequence[object] | np.ndarray],
    features: Sequence[FeatureSpec],
    metrics: dict[str, float] | None = None,
) -> Baseline:
    """Summarise training data column by column."""
    stats: dict[str, FeatureBaseline] = {}
    rows = 0
    for spec in features:
        column = columns[spec.name]
        rows = max(rows, len(column))
        if spec.sensitive:  # counts only: no value of a sensitive column leaves the training data
            missing = sum(1 for v in column if v is None or (isinstance(v, float) and v != v))
            stats[spec.name] = FeatureBaseline(count=len(column) - missing, missing=missing)
        elif spec.dtype == "categorical" and not spec.numeric_categories:
            stats[spec.name] = _categorical_baseline(list(column))
        else:
            stats[spec.name] = _numeric_baseline(np.asarray(column, dtype=np.float64))
    return Baseline(rows=rows, features=stats, metrics=dict(metrics or {}))


def prediction_baseline(predictions: np.ndarray, task: str) -> FeatureBaseline | None:
    """The prediction baseline: label shares (classification) or value deciles (regression) of the
    model's predictions on the training rows; None for multi-output models."""
    values = np.asarray(predictions)
    if values.ndim != 1 or values.size == 0:
        return None
    if task == "classification":
        return _categorical_baseline([v.item() if hasattr(v, "item") else v for v in values])
    return _numeric_baseline(values.astype(np.float64))


def typical_row(manifest: Manifest) -> list[Any]:
    """One row in the training distribution, in feature order: each numeric feature's training
    median (rounded for integers and booleans) clipped to its range, the first category of the rest."""
    row: list[Any] = []
    for spec in manifest.inputs:
        base = manifest.baseline.features.get(spec.name)
        if spec.dtype == "categorical" and spec.categories:
            row.append(spec.categories[0])
            continue
        value = base.quantiles.get("0.5") if base else None
        if value is None:
            value = spec.default if spec.default is not None else (spec.minimum or 0.0)
        if spec.dtype in ("integer", "boolean"):
            value = float(round(value))
        low = spec.minimum if spec.minimum is not None else -np.inf
        high = spec.maximum if spec.maximum is not None else np.inf
        row.append(float(np.clip(value, low, high)))
    return row
