"""`DriftState`: the counters of one window and its verdict, for the runtime and the drift report."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from model_packages.drift.calibration import Calibration, per_window_alpha, statistic
from model_packages.drift.counters import PREDICTION, FeatureLayout, feature_layouts
from model_packages.drift.stats import fractions, jensen_shannon, psi, wasserstein
from model_packages.manifest import Manifest

CALIBRATION_CACHE = 4  # window sizes whose tail tables are kept


@dataclass(frozen=True)
class FeatureScore:
    """One feature's drift over a window: distances for humans, and the calibrated test."""

    psi: float
    js: float
    wasserstein: float | None  # numeric features only
    statistic: float  # -log10 of the smallest tail probability of the feature's slots
    threshold: float  # -log10 of the feature's per-slot level: the alarm fires at statistic >= threshold
    alarm: bool


@dataclass(frozen=True)
class Verdict:
    """The calibrated verdict on one window (`alarm` is None when it has fewer than min_rows rows)."""

    rows: int
    alpha: float
    alarm: bool | None
    statistic: float  # the calibrated score: max over features of statistic / threshold (alarm at >= 1)
    features: dict[str, FeatureScore]

    def as_dict(self) -> dict[str, object]:
        return {
            "rows": self.rows, "alpha": self.alpha, "alarm": self.alarm, "statistic": self.statistic,
            "features": {name: vars(score) for name, score in self.features.items()},
        }


class DriftState:
    """Fixed-size counters (features x slots, int64) of one window, and their scoring.

    Thread-unsafe by design: the runtime serialises access; the report calls it from one thread."""

    def __init__(self, layouts: Sequence[FeatureLayout]) -> None:
        self.layouts = list(layouts)
        self.names = [layout.name for layout in self.layouts]
        self.width = max((layout.size for layout in self.layouts), default=1)
        self.counts = np.zeros((len(self.layouts), self.width), dtype=np.int64)
        self.expected = np.zeros((len(self.layouts), self.width))
        for k, layout in enumerate(self.layouts):
            self.expected[k, : layout.size] = layout.expected
        self._mask = np.zeros(self.counts.shape, dtype=bool)
        for k, layout in enumerate(self.layouts):
            self._mask[k, : layout.size] = True
        self._flat_expected = self.expected[self._mask]
        self._groups = np.nonzero(self._mask)[0]
        weights = np.array([layout.weight for layout in self.layouts], dtype=np.float64)
        # Beta-binomial slots when every feature knows how many training rows it came from.
        self._concentration = weights[self._groups] if self.layouts and (weights > 0).all() else None
        self._calibrations: OrderedDict[int, Calibration] = OrderedDict()

    @classmethod
    def from_manifest(cls, manifest: Manifest, *, prediction: bool = True) -> DriftState:
        return cls(feature_layouts(manifest, prediction=prediction))

    @property
    def enabled(self) -> bool:
        return bool(self.layouts)

    @property
    def rows(self) -> int:
        """Rows counted so far (every counter row sums to it)."""
        return int(self.counts[0].sum()) if self.layouts else 0

    @property
    def has_prediction(self) -> bool:
        return PREDICTION in self.names

    # -- counting ---------------------------------------------------------------------------
    def count(self, matrix: np.ndarray, predictions: np.ndarray | Sequence[object] | None = None) -> np.ndarray:
        """Counts of a batch (a 2-D matrix in the manifest's input order, float or object) without
        adding them. Without `predictions` the prediction row stays zero: pass them for every
        batch or for none, or `__prediction__` will not sum to the window's rows."""
        out = np.zeros_like(self.counts)
        for k, layout in enumerate(self.layouts):
            if layout.column < 0:
                if predictions is not None:
                    out[k, : layout.size] = layout.count(np.asarray(predictions).reshape(-1))
                continue
            out[k, : layout.size] = layout.count(matrix[:, layout.column])
        return out

    def count_columns(self, columns: Mapping[str, np.ndarray | Sequence[object]],
                      predictions: np.ndarray | Sequence[object] | None = None) -> np.ndarray:
        """Counts of a columnar batch: `columns[name]` for every feature (extra columns ignored)."""
        out = np.zeros_like(self.counts)
        for k, layout in enumerate(self.layouts):
            if layout.column < 0:
                values = predictions if predictions is not None else columns.get(PREDICTION)
                if values is not None:
                    out[k, : layout.size] = layout.count(np.asarray(values).reshape(-1))
                continue
            if layout.name not in columns:
                raise ValueError(f"the batch has no column {layout.name!r}")
            out[k, : layout.size] = layout.count(columns[layout.name])
        return out

    def update(self, matrix: np.ndarray, predictions: np.ndarray | Sequence[object] | None = None) -> None:
        self.add(self.count(matrix, predictions))

    def update_columns(self, columns: Mapping[str, np.ndarray | Sequence[object]],
                       predictions: np.ndarray | Sequence[object] | None = None) -> None:
        self.add(self.count_columns(columns, predictions))

    def add(self, counts: np.ndarray) -> None:
        if counts.shape != self.counts.shape:
            raise ValueError(f"counts have shape {counts.shape}, expected {self.counts.shape}")
        self.counts += counts

    def reset(self) -> None:
        self.counts[:] = 0

    # -- scoring ----------------------------------------------------------------------------
    def calibration(self, n: int) -> Calibration:
        """Tail tables for windows of `n` rows (a few window sizes are cached)."""
        cal = self._calibrations.get(n)
        if cal is None:
            cal = Calibration(self._flat_expected, n, self._groups, self._concentration)
            self._calibrations[n] = cal
            while len(self._calibrations) > CALIBRATION_CACHE:
                self._calibrations.popitem(last=False)
        else:
            self._calibrations.move_to_end(n)
        return cal

    def thresholds(self, alpha: float, n: int) -> dict[str, float]:
        """Per feature, the statistic at which a window of `n` rows alarms, for a window
        false-alarm probability `alpha` (computed once per (n, alpha) and cached)."""
        levels = statistic(self.calibration(n).level(alpha))
        return {name: float(t) for name, t in zip(self.names, levels, strict=True)}

    def scores(self, alpha: float, counts: np.ndarray | None = None) -> dict[str, FeatureScore]:
        """Per feature: PSI, Jensen-Shannon, normalised Wasserstein, the calibrated statistic, the
        threshold for a window of this many rows at false-alarm probability `alpha`, and the alarm.
        Features whose counter row is empty (e.g. `__prediction__` when no predictions were
        counted) are left out."""
        counts = self.counts if counts is None else counts
        if not self.layouts:
            return {}
        n = int(counts[0].sum())
        if n <= 0:
            return {}
        cal = self.calibration(n)
        thresholds = statistic(cal.level(alpha))
        stats = np.full(self.counts.shape, 0.0)
        totals = counts.sum(axis=1)
        full = totals == n
        # A row with another total (no predictions counted) is tested on its own table only if
        # it is complete; otherwise it gets no calibrated statistic.
        stats[self._mask] = statistic(cal.tails(counts[self._mask]))
        actual = fractions(counts.astype(np.float64))
        out: dict[str, FeatureScore] = {}
        for k, layout in enumerate(self.layouts):
            if totals[k] == 0:
                continue
            size = layout.size
            stat = float(stats[k, :size].max()) if full[k] else 0.0
            threshold = float(thresholds[k])
            out[layout.name] = FeatureScore(
                psi=psi(layout.expected, actual[k, :size]),
                js=jensen_shannon(layout.expected, actual[k, :size]),
                wasserstein=wasserstein(layout, actual[k, :size]),
                statistic=stat, threshold=threshold, alarm=bool(full[k] and stat >= threshold),
            )
        return out

    def evaluate(self, alpha: float, *, min_rows: int = 1, counts: np.ndarray | None = None) -> Verdict:
        """The calibrated verdict on the window (`counts`, default the state's own): an alarm when
        any feature's statistic reaches the threshold; no verdict below `min_rows` rows."""
        counts = self.counts if counts is None else counts
        n = int(counts[0].sum()) if self.layouts else 0
        if n < max(1, min_rows):
            return Verdict(rows=n, alpha=alpha, alarm=None, statistic=0.0, features={})
        features = self.scores(alpha, counts)
        top = max((s.statistic / s.threshold for s in features.values() if s.threshold > 0), default=0.0)
        return Verdict(rows=n, alpha=alpha, alarm=any(s.alarm for s in features.values()),
                       statistic=top, features=features)

    def null_counts(self, n: int, windows: int, rng: np.random.Generator,
                    probabilities: Sequence[np.ndarray] | None = None) -> np.ndarray:
        """`windows` windows of `n` rows drawn from `probabilities` (per feature; default the
        baseline's `expected`): (windows, features, slots)."""
        out = np.zeros((windows, *self.counts.shape), dtype=np.int64)
        for k, layout in enumerate(self.layouts):
            p = layout.expected if probabilities is None else probabilities[k]
            out[:, k, : layout.size] = rng.multinomial(n, p, size=windows)
        return out

    def alarms(self, alpha: float, windows: np.ndarray) -> np.ndarray:
        """Vectorised verdicts on many windows of the same row count: (windows,) booleans."""
        n = int(windows[0, 0].sum())
        cal = self.calibration(n)
        levels = cal.level(alpha)[self._groups]
        tails = cal.tails(windows[:, self._mask])
        return np.asarray((tails <= levels).any(axis=1))


__all__ = ["DriftState", "FeatureScore", "Verdict", "per_window_alpha"]
