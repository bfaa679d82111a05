"""Drift in the serving path: PSI against the training baseline's decile bins."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model_packages.manifest import read_manifest
from model_packages.serving.drift import FeatureStats, psi
from model_packages.serving.settings import Settings, SettingsError

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
    for _ in range(100):
        shifted = _training_like(40, rng)
        shifted[:, 0] += 5
        stats.observe(shifted)
    assert stats.scores()["sepal_length"] > 0.25
    for _ in range(150):
        stats.observe(_training_like(40, rng))
    assert stats.scores()["sepal_length"] < 0.1


def test_one_big_request_cannot_decide_the_score() -> None:
    """Attack a15: after skewed traffic, one 6,000-row training-like request used to reset the score to 0.02."""
    stats = FeatureStats(read_manifest(IRIS), window_rows=5000, min_rows=100)
    rng = np.random.default_rng(4)
    skewed = np.tile([7.9, 2.0, 6.9, 2.5], (50, 1))
    for _ in range(200):
        stats.observe(skewed)
    before = max(stats.scores().values())
    stats.observe(_training_like(6000, rng))
    assert before > 5 and max(stats.scores().values()) > 2.0  # still far above the 0.25 alert
    calm = FeatureStats(read_manifest(IRIS), window_rows=5000, min_rows=100)
    for _ in range(200):
        calm.observe(_training_like(50, rng))
    calm.observe(np.tile([7.9, 2.0, 6.9, 2.5], (6000, 1)))  # one skewed request does not forge an alarm
    assert max(calm.scores().values()) < 0.25


def test_scrapes_do_not_grow_the_window() -> None:
    """Attack a16: with a large window each scrape used to add one window entry per pending row."""
    stats = FeatureStats(read_manifest(IRIS), window_rows=1_000_000, min_rows=1)
    row = np.array([[5.1, 3.5, 1.4, 0.2]])
    for _ in range(5000):
        stats.observe(row)
        stats.scores()
    assert stats.window_rows_seen == 5000
    assert len(stats._window) <= 3


def test_workers_score_the_sum_of_their_windows(tmp_path: Path) -> None:
    manifest = read_manifest(IRIS)
    first = FeatureStats(manifest, window_rows=5000, min_rows=100, share_dir=tmp_path, worker=0)
    second = FeatureStats(manifest, window_rows=5000, min_rows=100, share_dir=tmp_path, worker=1)
    rng = np.random.default_rng(5)
    for _ in range(40):
        shifted = _training_like(10, rng)
        shifted[:, 2] += 3.0
        second.observe(shifted)
    second.flush()
    assert first.scores()["petal_length"] > 0.25 and first.window_rows_seen == 400
    for _ in range(40):
        first.observe(_training_like(10, rng))
    assert first.window_rows_seen == 800 and second.window_rows_seen == 400 + 0  # second has not seen first's yet
    first.flush()
    assert second.window_rows_seen == 800


def test_no_score_before_min_rows() -> None:
    stats = FeatureStats(read_manifest(IRIS), min_rows=100)
    stats.observe(np.ones((5, 4)))
    assert stats.scores() == {}


@pytest.mark.parametrize(("name", "value"), [
    ("KAIZEN_DRIFT_LOG_INTERVAL", "1e-300"), ("KAIZEN_DRIFT_LOG_INTERVAL", "nan"), ("KAIZEN_DRAIN_SECONDS", "nan"),
    ("KAIZEN_DRAIN_SECONDS", "inf"), ("KAIZEN_DRIFT_WINDOW_ROWS", "-5"), ("KAIZEN_DRIFT_WINDOW_ROWS", "10000000"),
    ("KAIZEN_KEEPALIVE_TIMEOUT", "0"), ("KAIZEN_WORKERS", "-1"),
])
def test_absurd_settings_are_refused(name: str, value: str) -> None:
    """a22: 1e-300 made an idle server spin a core; nan turned the drift log or the drain off silently."""
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_min_rows_above_the_window_is_refused() -> None:
    with pytest.raises(SettingsError, match="KAIZEN_DRIFT_MIN_ROWS"):
        Settings.from_env({"KAIZEN_DRIFT_WINDOW_ROWS": "100", "KAIZEN_DRIFT_MIN_ROWS": "500"})
    assert Settings.from_env({"KAIZEN_DRIFT_LOG_INTERVAL": "0"}).drift_log_interval == 0  # 0 still means off
