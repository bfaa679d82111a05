"""Drift in the serving path: PSI against the training baseline's decile bins."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from model_packages.manifest import read_manifest
from model_packages.serving.drift import FeatureStats, psi

IRIS = Path(__file__).resolve().parents[2] / "examples" / "iris-classifier"


def test_psi_of_identical_distributions_is_zero() -> None:
    fractions = np.full((2, 10), 0.1)
    assert np.allclose(psi(fractions, fractions), 0.0)
    shifted = np.array([[0.5] + [0.5 / 9] * 9])
    assert psi(fractions[:1], shifted)[0] > 0.25


def _training_like(n: int, rng: np.random.Generator) -> np.ndarray:
    from sklearn.datasets import load_iris

    data = np.asarray(load_iris(return_X_y=True)[0])
    return data[rng.integers(0, len(data), size=n)]


def test_training_like_traffic_does_not_drift() -> None:
    stats = FeatureStats(read_manifest(IRIS), window_rows=5000, min_rows=100)
    rng = np.random.default_rng(1)
    for _ in range(300):
        stats.observe(_training_like(4, rng))
    scores = stats.scores()
    assert set(scores) == {"sepal_length", "sepal_width", "petal_length", "petal_width"}
    assert max(scores.values()) < 0.1


def test_shifted_feature_drifts_and_is_named() -> None:
    stats = FeatureStats(read_manifest(IRIS), window_rows=5000, min_rows=100)
    rng = np.random.default_rng(2)
    for _ in range(300):
        rows = _training_like(4, rng)
        rows[:, 2] += 3.0  # petal length shifted by 3 cm
        stats.observe(rows)
    scores = stats.scores()
    assert scores["petal_length"] > 0.25
    assert max(scores, key=lambda k: scores[k]) == "petal_length"


def test_window_forgets_old_traffic() -> None:
    stats = FeatureStats(read_manifest(IRIS), window_rows=2000, min_rows=100)
    rng = np.random.default_rng(3)
    shifted = _training_like(4096, rng)
    shifted[:, 0] += 5
    stats.observe(shifted)
    assert stats.scores()["sepal_length"] > 0.25
    for _ in range(3):
        stats.observe(_training_like(2048, rng))
    assert stats.scores()["sepal_length"] < 0.1


def test_no_score_before_min_rows() -> None:
    stats = FeatureStats(read_manifest(IRIS), min_rows=100)
    stats.observe(np.ones((5, 4)))
    assert stats.scores() == {}
