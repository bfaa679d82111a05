"""The promotion gate, checked by simulation: equally good models are (almost) never promoted, a
genuinely better one is, at the documented holdout size (1,000 rows, +5 accuracy points)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from model_packages.retrain.gate import GateSpec, evaluate

HOLDOUT_ROWS = 1000  # documented in the README: detects +5 accuracy points with >= 80% power


def _paired(seed: int, rows: int, p_champion: float, p_challenger: float, rho: float = 0.5):
    """Labels and two models' predictions whose correctness is correlated (they share hard rows)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, rows)
    shared = rng.normal(size=rows)
    a = rho**0.5 * shared + (1 - rho) ** 0.5 * rng.normal(size=rows)
    b = rho**0.5 * shared + (1 - rho) ** 0.5 * rng.normal(size=rows)
    champion = np.where(a < norm.ppf(p_champion), y, 1 - y)
    challenger = np.where(b < norm.ppf(p_challenger), y, 1 - y)
    return y, champion, challenger


@pytest.mark.slow
def test_equally_good_models_are_promoted_at_most_5_percent_of_the_time() -> None:
    promoted = [evaluate(*_paired(seed, HOLDOUT_ROWS, 0.85, 0.85), GateSpec(seed=seed)).promote for seed in range(100)]
    assert sum(promoted) <= 5


@pytest.mark.slow
def test_a_better_model_passes_with_at_least_80_percent_power() -> None:
    promoted = [evaluate(*_paired(1000 + s, HOLDOUT_ROWS, 0.85, 0.90), GateSpec(seed=s)).promote for s in range(100)]
    assert sum(promoted) >= 80


def test_thresholds_in_mlflow_vocabulary_and_the_report() -> None:
    y, champion, challenger = _paired(7, HOLDOUT_ROWS, 0.80, 0.95)
    assert evaluate(y, champion, challenger).promote
    strict = evaluate(y, champion, challenger, GateSpec(threshold=0.99, min_relative_change=0.5))
    assert not strict.promote
    assert any("threshold 0.99" in r for r in strict.reasons)
    assert any("min_relative_change" in r for r in strict.reasons)
    report = strict.report()
    assert report.startswith("# Promotion gate: REJECT") and "1000 resamples" in report


def test_regression_metrics_orient_lower_as_better() -> None:
    rng = np.random.default_rng(3)
    y = rng.normal(size=500)
    champion = y + rng.normal(scale=1.0, size=500)
    challenger = y + rng.normal(scale=0.5, size=500)
    result = evaluate(y, champion, challenger, GateSpec(metric="rmse"))
    assert result.promote and result.improvement > 0 and result.challenger < result.champion
    assert not evaluate(y, challenger, champion, GateSpec(metric="rmse", policy="not_worse", margin=0.01)).promote


def test_bad_gate_input_names_the_problem() -> None:
    with pytest.raises(ValueError, match="at least 1000"):
        GateSpec(resamples=10)
    with pytest.raises(ValueError, match="'f1' is not one of"):
        GateSpec(metric="f1")
    with pytest.raises(ValueError, match="same >= 2 holdout rows"):
        evaluate([1, 0, 1], [1, 0], [1, 0, 1])
