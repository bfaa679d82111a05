"""The calibrated alarm, checked statistically: false alarms per simulated month on null streams."""

from __future__ import annotations

import numpy as np
import pytest

from model_packages.drift import DriftState, per_window_alpha
from model_packages.drift.counters import categorical_layout, numeric_layout
from model_packages.manifest import FeatureBaseline

SEEDS = 20
MONTHS_PER_SEED = 4
WINDOW_SECONDS = 3600
FALSE_ALARM_DAYS = 30


def _state(features: int = 20) -> DriftState:
    """A baseline of `features` features: numeric deciles (with under/over-range and missing slots)
    and a few categoricals with skewed shares."""
    rng = np.random.default_rng(0)
    layouts = []
    for j in range(features):
        if j % 5 == 4:
            shares = rng.dirichlet(np.ones(4) * 2)
            base = FeatureBaseline(count=10_000, category_fractions={f"c{i}": float(s) for i, s in enumerate(shares)})
            layout = categorical_layout(f"f{j}", j, base)
        else:
            base = FeatureBaseline(count=10_000, missing=50, mean=0.0, std=1.0, min=-4.0, max=4.0,
                                   bin_edges=[float(e) for e in np.linspace(-1.5, 1.5, 9)],
                                   bin_fractions=[0.1] * 10)
            layout = numeric_layout(f"f{j}", j, base)
        assert layout is not None
        layouts.append(layout)
    return DriftState(layouts)


@pytest.mark.parametrize("rows", [200, 2000])
def test_false_alarms_per_month_match_the_configured_rate(rows: int) -> None:
    state = _state()
    alpha = per_window_alpha(FALSE_ALARM_DAYS, WINDOW_SECONDS)
    windows_per_month = FALSE_ALARM_DAYS * 86_400 // WINDOW_SECONDS
    rates = []
    for seed in range(SEEDS):
        rng = np.random.default_rng(1000 + seed)
        windows = state.null_counts(rows, windows_per_month * MONTHS_PER_SEED, rng)
        rates.append(state.alarms(alpha, windows).sum() / MONTHS_PER_SEED)
    mean = float(np.mean(rates))
    # Configured: one false alarm per 30 days. Poisson noise on 80 months x 1 alarm is about 11%.
    assert 1 / 1.5 <= mean <= 1.5, f"{mean:.2f} false alarms per month at {rows}-row windows (per seed: {rates})"


def test_a_shifted_stream_alarms_within_a_few_windows() -> None:
    state = _state()
    alpha = per_window_alpha(FALSE_ALARM_DAYS, WINDOW_SECONDS)
    rng = np.random.default_rng(5)
    windows = state.null_counts(2000, 50, rng)
    # Move 10% of feature f0's mass from its lowest decile to its highest (a real, modest shift).
    first = windows[:, 0, 2].copy()
    moved = rng.binomial(first, 0.5)
    windows[:, 0, 2] -= moved
    windows[:, 0, 11] += moved
    assert state.alarms(alpha, windows).mean() > 0.9
    verdict = state.evaluate(alpha, counts=windows[0])
    assert verdict.features["f0"].alarm
    assert not any(score.alarm for name, score in verdict.features.items() if name != "f0")
