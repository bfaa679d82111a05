"""The drift core: counters on the baseline's slots, distances, and the calibrated per-window test."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from scipy import stats as scipy_stats

from model_packages.baseline import compute_baseline, prediction_baseline
from model_packages.drift import PREDICTION, Calibration, DriftState, per_window_alpha
from model_packages.manifest import FeatureSpec, Lineage, Manifest, OutputSpec

RNG_SEED = 7


def _manifest(n: int = 5000, task: str = "classification") -> tuple[Manifest, dict[str, np.ndarray]]:
    rng = np.random.default_rng(RNG_SEED)
    columns: dict[str, np.ndarray] = {
        "x": rng.normal(size=n),
        "k": rng.integers(0, 5, size=n).astype(np.float64),
        "flag": (rng.random(n) < 0.3).astype(np.float64),
        "colour": rng.choice(np.array(["red", "green", "blue"], dtype=object), p=[0.1, 0.3, 0.6], size=n),
    }
    specs = [FeatureSpec(name="x"), FeatureSpec(name="k", dtype="integer"), FeatureSpec(name="flag", dtype="boolean"),
             FeatureSpec(name="colour", dtype="categorical", categories=["red", "green", "blue"])]
    baseline = compute_baseline(columns, specs)
    if task == "classification":
        labels = np.where(columns["x"] > 0.5, "yes", "no").astype(object)
        output = OutputSpec(task="classification", labels=["no", "yes"])
    else:
        labels = columns["x"] * 2.0
        output = OutputSpec(task="regression")
    baseline = baseline.model_copy(update={"prediction": prediction_baseline(labels, output.task)})
    manifest = Manifest(
        name="m", version="1.0.0", framework="sklearn", format="skops", artifact="model.skops",
        artifact_sha256="0" * 64, inputs=specs, output=output, baseline=baseline,
        lineage=Lineage(data_sha256="0" * 64, created_at=datetime.now(UTC), kaizen_version="0"),
    )
    columns[PREDICTION] = labels
    return manifest, columns


def _matrix(columns: dict[str, np.ndarray], names: list[str]) -> np.ndarray:
    out = np.empty((len(columns[names[0]]), len(names)), dtype=object)
    for j, name in enumerate(names):
        out[:, j] = columns[name]
    return out


def test_every_feature_type_gets_counters_that_sum_to_the_rows() -> None:
    manifest, columns = _manifest()
    state = DriftState.from_manifest(manifest)
    assert state.names == ["x", "k", "flag", "colour", PREDICTION]
    kinds = [layout.kind for layout in state.layouts]
    assert kinds == ["numeric", "numeric", "boolean", "categorical", "categorical"]
    matrix = _matrix(columns, ["x", "k", "flag", "colour"])[:1000]
    state.update(matrix, columns[PREDICTION][:1000])
    assert state.rows == 1000
    for k, layout in enumerate(state.layouts):
        assert state.counts[k, : layout.size].sum() == 1000
        assert np.isclose(layout.expected.sum(), 1.0)
    colour = state.layouts[3]
    assert colour.labels == ["missing", "red", "green", "blue", "unseen"]


def test_missing_out_of_range_and_unseen_values_have_their_own_slots() -> None:
    manifest, _ = _manifest()
    state = DriftState.from_manifest(manifest, prediction=False)
    x = state.layouts[0]
    base = manifest.baseline.features["x"]
    assert base.min is not None and base.max is not None
    counts = x.count(np.array([np.nan, base.min - 1, base.max + 1, base.max + 2, 0.0]))
    assert counts[0] == 1 and counts[1] == 1 and counts[-1] == 2 and counts[2:-1].sum() == 1
    colour = state.layouts[3]
    counts = colour.count(np.array(["red", "purple", None, np.nan, "blue"], dtype=object))
    assert counts.tolist() == [2, 1, 0, 1, 1]
    flag = state.layouts[2]
    assert flag.count(np.array([0.0, 1.0, 1.0, np.nan])).tolist() == [1, 1, 2]


def test_columnar_batches_count_like_matrices() -> None:
    manifest, columns = _manifest()
    a = DriftState.from_manifest(manifest)
    b = DriftState.from_manifest(manifest)
    a.update(_matrix(columns, ["x", "k", "flag", "colour"]), columns[PREDICTION])
    b.update_columns(columns)
    assert np.array_equal(a.counts, b.counts)
    with pytest.raises(ValueError, match=r"no column .k."):
        b.count_columns({"x": columns["x"]})


def test_tail_tables_match_scipy_binomial() -> None:
    p = np.array([0.001, 0.05, 0.3, 0.649])
    cal = Calibration(p, 500)
    counts = np.array([[0, 25, 150, 325], [3, 10, 190, 297], [9, 45, 120, 326]])
    tails = cal.tails(counts)
    expected = np.minimum(scipy_stats.binom.cdf(counts, 500, p), scipy_stats.binom.sf(counts - 1, 500, p))
    assert np.allclose(tails, expected, rtol=1e-8, atol=1e-300)


def test_level_gives_the_requested_window_false_alarm_probability() -> None:
    p = np.full(12 * 20, 1 / 12)  # twenty features of twelve equal slots: the most discrete case
    groups = np.repeat(np.arange(20), 12)
    for n in (100, 2000):
        cal = Calibration(p, n, groups)
        alpha = 1 / 720
        levels = cal.level(alpha)
        assert cal.window_size(levels) <= alpha * 1.06  # alpha is rounded onto a grid of 20 per decade
        assert cal.window_size(levels) > alpha * 0.8  # the budget is spent, not left to discreteness
        assert levels.min() > alpha / 480 / 1.01  # at least the Sidak level


def test_wide_tables_search_levels_like_a_full_scan_and_build_in_blocks_like_one() -> None:
    """Wide tables (big windows, the report's 1M rows) bisect each slot's monotone tail row and are
    built a block of slots at a time, on two threads: the same numbers as scanning and one block."""
    from model_packages.drift import calibration

    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.full(12, 2.0), size=30).ravel()
    groups = np.repeat(np.arange(30), 12)
    concentration = np.full(p.size, 3000.0)
    cal = Calibration(p, 40_000, groups, concentration)
    assert cal.width > calibration.DENSE_WIDTH
    for level in (1e-9, 3e-6, 1e-3, 0.2, cal.level(1 / 720)):
        limit = np.broadcast_to(np.asarray(level, dtype=np.float64)[groups] if np.ndim(level) else level, p.shape)
        up = np.where(cal.upper <= limit[:, None], cal.upper, 0.0).max(axis=1)
        down = np.where(cal.lower <= limit[:, None], cal.lower, 0.0).max(axis=1)
        assert np.array_equal(cal.slot_sizes(level), np.minimum(up + down, 1 - 1e-16))
        tables = np.concatenate([cal.upper, cal.lower], axis=1)
        assert np.array_equal(cal.next_levels(level), np.where(tables > limit[:, None], tables, np.inf).min(axis=1))
    block, parallel = calibration.TABLE_BLOCK, calibration.PARALLEL_TABLE
    try:
        calibration.TABLE_BLOCK, calibration.PARALLEL_TABLE = 1 << 40, 1 << 60  # one block, one thread
        whole = Calibration(p, 40_000, groups, concentration)
        calibration.TABLE_BLOCK, calibration.PARALLEL_TABLE = 1 << 14, 1  # many blocks, two threads
        blocks = Calibration(p, 40_000, groups, concentration)
    finally:
        calibration.TABLE_BLOCK, calibration.PARALLEL_TABLE = block, parallel
    for table in ("lower", "upper"):
        assert np.array_equal(getattr(whole, table), getattr(cal, table))
        assert np.array_equal(getattr(blocks, table), getattr(cal, table))


def test_per_window_alpha() -> None:
    assert per_window_alpha(30, 3600) == pytest.approx(1 / 720)
    assert per_window_alpha(1, 86_400 * 10) == 0.5
    with pytest.raises(ValueError):
        per_window_alpha(0, 3600)


def test_baseline_like_window_is_quiet_and_shifted_window_alarms_on_the_right_feature() -> None:
    manifest, columns = _manifest()
    state = DriftState.from_manifest(manifest)
    alpha = per_window_alpha(30, 3600)
    rng = np.random.default_rng(3)
    idx = rng.integers(0, 5000, size=2000)
    sample = {name: values[idx] for name, values in columns.items()}
    state.update_columns(sample)
    verdict = state.evaluate(alpha, min_rows=100)
    assert verdict.alarm is False and verdict.rows == 2000
    assert set(verdict.features) == {"x", "k", "flag", "colour", PREDICTION}
    assert all(s.psi < 0.05 and s.js < 0.1 for s in verdict.features.values())
    state.reset()
    shifted = dict(sample, x=sample["x"] + 0.5)
    state.update_columns(shifted, predictions=sample[PREDICTION])
    verdict = state.evaluate(alpha, min_rows=100)
    assert verdict.alarm is True
    assert verdict.features["x"].alarm and not verdict.features["colour"].alarm
    assert verdict.features["x"].statistic >= verdict.features["x"].threshold > 0
    assert verdict.statistic >= 1.0
    w = verdict.features["x"].wasserstein
    assert w is not None and 0.4 < w < 0.8  # a 0.5-sigma shift, measured coarsely on ten bins
    assert verdict.features["colour"].wasserstein is None


def test_no_verdict_below_min_rows() -> None:
    manifest, columns = _manifest()
    state = DriftState.from_manifest(manifest)
    state.update_columns({k: v[:50] for k, v in columns.items()})
    verdict = state.evaluate(0.01, min_rows=100)
    assert verdict.alarm is None and verdict.rows == 50 and verdict.features == {}


def test_regression_prediction_drift_uses_value_deciles() -> None:
    manifest, columns = _manifest(task="regression")
    state = DriftState.from_manifest(manifest)
    assert state.layouts[-1].name == PREDICTION and state.layouts[-1].kind == "numeric"
    state.update_columns({k: v[:1000] for k, v in columns.items()}, predictions=columns[PREDICTION][:1000] + 3.0)
    verdict = state.evaluate(0.001)
    assert verdict.features[PREDICTION].alarm and not verdict.features["x"].alarm


def test_old_manifest_without_prediction_baseline_has_no_prediction_drift() -> None:
    manifest, _ = _manifest()
    old = manifest.model_copy(update={"baseline": manifest.baseline.model_copy(update={"prediction": None})})
    assert PREDICTION not in DriftState.from_manifest(old).names


def test_add_refuses_counts_of_another_shape() -> None:
    manifest, _ = _manifest()
    state = DriftState.from_manifest(manifest)
    with pytest.raises(ValueError, match="shape"):
        state.add(np.zeros((2, 2), dtype=np.int64))
