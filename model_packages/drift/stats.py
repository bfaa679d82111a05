"""Distances for humans between a window's counter row and the baseline's slot probabilities."""

from __future__ import annotations

import numpy as np

from model_packages.drift.counters import FeatureLayout

PSI_EPSILON = 1e-4  # floor on fractions, so an empty slot does not make PSI infinite


def fractions(counts: np.ndarray) -> np.ndarray:
    total = counts.sum(axis=-1, keepdims=True)
    return np.divide(counts, total, out=np.zeros(counts.shape, dtype=np.float64), where=total > 0)


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population Stability Index of two probability vectors."""
    e = np.clip(expected, PSI_EPSILON, None)
    a = np.clip(actual, PSI_EPSILON, None)
    return float(np.sum((a - e) * np.log(a / e)))


def jensen_shannon(expected: np.ndarray, actual: np.ndarray) -> float:
    """Jensen-Shannon distance (square root of the divergence, base 2): 0 (same) .. 1 (disjoint)."""
    m = (expected + actual) / 2

    def kl(p: np.ndarray) -> float:
        mask = p > 0
        return float(np.sum(p[mask] * np.log2(p[mask] / m[mask])))

    return float(np.sqrt(max(0.0, (kl(expected) + kl(actual)) / 2)))


def wasserstein(layout: FeatureLayout, actual: np.ndarray) -> float | None:
    """Wasserstein-1 distance between the binned baseline and window, divided by the baseline's
    standard deviation (numeric features only; each bin's mass at its midpoint, under- and
    over-range mass at the training minimum and maximum; missing values left out)."""
    if layout.kind != "numeric" or not layout.std:
        return None
    e = layout.expected[1:]
    a = actual[1:]
    if a.sum() <= 0:
        return None
    e = e / e.sum()
    a = a / a.sum()
    # Each bin's mass at its midpoint; under- and over-range mass at the training min and max.
    points = np.concatenate([[layout.edges[0]], (layout.edges[:-1] + layout.edges[1:]) / 2, [layout.edges[-1]]])
    gap = np.abs(np.cumsum(a)[:-1] - np.cumsum(e)[:-1])
    return float(np.sum(gap * np.diff(points)) / layout.std)
