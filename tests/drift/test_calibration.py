"""The calibrated alarm, checked statistically: false alarms per simulated month on null streams.

Each seed is one deployment: a training set drawn from the true distribution gives the baseline
(deciles, shares, missing counts, exactly as packages compute them), then a month of hourly
windows is drawn from the same true distribution. The alarm accounts for the baseline's own
sampling error (Beta-binomial slots), so it must hold its rate even when the window is larger
than the training set."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from model_packages.baseline import compute_baseline
from model_packages.drift import DriftState, per_window_alpha
from model_packages.drift.counters import categorical_layout, numeric_layout
from model_packages.manifest import FeatureSpec

SEEDS = 20
MONTHS_PER_SEED = 4
WINDOW_SECONDS = 3600
FALSE_ALARM_DAYS = 30
FEATURES = 20
MISSING = 0.005
CATEGORIES = ["a", "b", "c", "d"]
SHARES = np.array([0.1, 0.2, 0.3, 0.4])


def _deployment(training_rows: int, rng: np.random.Generator) -> tuple[DriftState, list[np.ndarray]]:
    """A baseline from `training_rows` rows, and the true probability of each of its slots."""
    columns: dict[str, object] = {}
    specs = []
    for j in range(FEATURES):
        if j % 5 == 4:
            values = rng.choice(np.array(CATEGORIES, dtype=object), p=SHARES, size=training_rows)
            specs.append(FeatureSpec(name=f"f{j}", dtype="categorical", categories=CATEGORIES))
        else:
            values = rng.normal(size=training_rows)
            values[rng.random(training_rows) < MISSING] = np.nan
            specs.append(FeatureSpec(name=f"f{j}", nullable=True))
        columns[f"f{j}"] = values
    baseline = compute_baseline(columns, specs)  # type: ignore[arg-type]
    layouts, truth = [], []
    for j, spec in enumerate(specs):
        base = baseline.features[spec.name]
        if spec.dtype == "categorical":
            layout = categorical_layout(spec.name, j, base, CATEGORIES)
            p = np.concatenate([[0.0], SHARES, [0.0]])
        else:
            layout = numeric_layout(spec.name, j, base)
            assert layout is not None
            cdf = stats.norm.cdf(layout.edges)  # [min, inner edges..., max]
            present = np.concatenate([[cdf[0]], np.diff(cdf), [1 - cdf[-1]]])
            p = np.concatenate([[MISSING], (1 - MISSING) * present])
        assert layout is not None and layout.size == p.size
        layouts.append(layout)
        truth.append(p / p.sum())
    return DriftState(layouts), truth


@pytest.mark.parametrize(("rows", "training_rows"), [(200, 10_000), (2000, 10_000), (5000, 10_000)])
def test_false_alarms_per_month_match_the_configured_rate(rows: int, training_rows: int) -> None:
    alpha = per_window_alpha(FALSE_ALARM_DAYS, WINDOW_SECONDS)
    windows_per_month = FALSE_ALARM_DAYS * 86_400 // WINDOW_SECONDS
    rates = []
    for seed in range(SEEDS):
        rng = np.random.default_rng(1000 + seed)
        state, truth = _deployment(training_rows, rng)
        windows = state.null_counts(rows, windows_per_month * MONTHS_PER_SEED, rng, truth)
        rates.append(float(state.alarms(alpha, windows).sum()) / MONTHS_PER_SEED)
    mean = float(np.mean(rates))
    # Configured: one false alarm per 30 days. Poisson noise on 80 months is about 11%.
    assert 1 / 1.5 <= mean <= 1.5, f"{mean:.2f} false alarms per month, {rows}-row windows (per seed: {rates})"


def test_a_shifted_stream_alarms_within_a_few_windows() -> None:
    state, truth = _deployment(10_000, np.random.default_rng(4))
    alpha = per_window_alpha(FALSE_ALARM_DAYS, WINDOW_SECONDS)
    rng = np.random.default_rng(5)
    shifted = [p.copy() for p in truth]
    shifted[0][2] /= 2  # half of feature f0's lowest decile moves to its highest
    shifted[0][11] += truth[0][2] / 2
    windows = state.null_counts(2000, 50, rng, shifted)
    assert state.alarms(alpha, windows).mean() > 0.9
    verdict = state.evaluate(alpha, counts=windows[0])
    assert verdict.features["f0"].alarm
    assert not any(score.alarm for name, score in verdict.features.items() if name != "f0")
