"""What the report needs from the drift core: slot layouts, columnar counting and the verdict.

The report counts rows with the same code as the serving runtime (`model_packages.drift`), so its
numbers equal what `/metrics` shows for the same rows. Until that core is present this module falls
back to the baseline's decile bins and PSI only (no calibrated verdict).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from model_packages.manifest import Manifest

PREDICTION = "__prediction__"


@dataclass(frozen=True)
class Slots:
    """One feature's counter slots: names and the baseline's probabilities."""

    name: str
    kind: str  # numeric, boolean, categorical
    labels: list[str]
    expected: np.ndarray


class Engine:
    """Counts column batches into fixed counters and scores them against the baseline."""

    def __init__(self, manifest: Manifest, alpha: float, min_rows: int) -> None:
        self.manifest = manifest
        self.alpha = alpha
        self.min_rows = min_rows
        self._core: Any = None
        self._layouts: list[Any] = []
        try:
            from model_packages.drift import DriftState
        except ImportError:  # pragma: no cover - the core is part of the package
            self._fallback(manifest)
        else:
            self._core = DriftState.from_manifest(manifest)
            self._layouts = list(self._core.layouts)
        self._prewarm: threading.Thread | None = None
        self.counts = np.zeros((len(self._layouts), max((len(s.labels) for s in self._layouts), default=1)),
                               dtype=np.int64)

    # -- the fallback: decile bins and category shares, PSI only ------------------------------
    def _fallback(self, manifest: Manifest) -> None:
        for column, spec in enumerate(manifest.inputs):
            base = manifest.baseline.features.get(spec.name)
            if base is None or spec.sensitive:
                continue
            if spec.dtype == "categorical" and not spec.numeric_categories and base.category_fractions:
                names = [str(c) for c in spec.categories or []]
                expected = np.array([0.0] + [base.category_fractions.get(c, 0.0) for c in names] + [0.0])
                self._layouts.append(_Layout(spec.name, "categorical", column, ["missing", *names, "unseen"],
                                             expected, index={c: k + 1 for k, c in enumerate(names)}))
            elif base.bin_fractions:
                bounds = [base.min, *base.bin_edges, base.max]
                labels = ["missing"] + [f"[{a:g}, {b:g})" for a, b in itertools.pairwise(bounds)]
                self._layouts.append(_Layout(spec.name, "numeric", column, labels,
                                             np.array([0.0, *base.bin_fractions]),
                                             inner=np.asarray(base.bin_edges, dtype=np.float64)))

    def prewarm(self, rows: int | Callable[[], int]) -> None:
        """Solve the calibration for a window of `rows` rows in a thread while the rows are being read
        (numpy releases the GIL; the tables depend only on the row count and alpha). `rows` may be a
        function counting them, called on that thread; a count the reading does not confirm only
        costs the time (the verdict solves for the rows read)."""
        least = max(1, self.min_rows)
        if self._core is None or (isinstance(rows, int) and rows < least):
            return
        core, alpha = self._core, self.alpha

        def solve() -> None:
            count = rows if isinstance(rows, int) else rows()
            if count >= least:
                core.thresholds(alpha, count)

        self._prewarm = threading.Thread(target=solve, name="kaizen-calibration", daemon=True)
        self._prewarm.start()

    @property
    def calibrated(self) -> bool:
        return self._core is not None

    @property
    def slots(self) -> list[Slots]:
        return [Slots(layout.name, layout.kind, list(layout.labels), np.asarray(layout.expected))
                for layout in self._layouts]

    @property
    def columns(self) -> list[str]:
        """Input columns the counters need (the prediction is optional)."""
        return [layout.name for layout in self._layouts if layout.name != PREDICTION]

    @property
    def kinds(self) -> dict[str, str]:
        return {layout.name: layout.kind for layout in self._layouts}

    def add(self, columns: Mapping[str, Any], predictions: Any) -> None:
        """Count one batch: `columns[name]` for every name in `columns` (float arrays, object arrays
        or `Coded` strings) and the predictions (or None). Each value goes through the drift core's
        own `FeatureLayout.count`; a `Coded` column is counted once per distinct value, weighted."""
        for k, layout in enumerate(self._layouts):
            values = predictions if layout.name == PREDICTION else columns[layout.name]
            if values is None:
                continue
            self.counts[k, : len(layout.labels)] += _count(layout, values)

    def verdict(self) -> dict[str, Any]:
        """Rows, alpha, alarm, statistic, threshold and per-feature scores (as the runtime reports them)."""
        if self._prewarm is not None:
            self._prewarm.join()
            self._prewarm = None
        if self._core is not None:
            return self._core.evaluate(self.alpha, min_rows=self.min_rows, counts=self.counts).as_dict()
        rows = int(self.counts[0].sum()) if self._layouts else 0
        features: dict[str, Any] = {}
        for k, layout in enumerate(self._layouts):
            row = self.counts[k, : len(layout.labels)].astype(np.float64)
            total = row.sum()
            if total <= 0:
                continue
            actual = np.clip(row / total, 1e-4, None)
            expected = np.clip(layout.expected, 1e-4, None)
            features[layout.name] = {"psi": float(np.sum((actual - expected) * np.log(actual / expected))),
                                     "js": None, "wasserstein": None, "statistic": None, "threshold": None,
                                     "alarm": None}
        return {"rows": rows, "alpha": self.alpha, "alarm": None, "statistic": None, "threshold": None,
                "features": features}


def _count(layout: Any, values: Any) -> np.ndarray:
    from model_packages.report.readers import Coded

    if not isinstance(values, Coded):
        return np.asarray(layout.count(values), dtype=np.int64)
    weights = np.bincount(values.codes + 1, minlength=len(values.values) + 1)
    total = np.zeros(len(layout.labels), dtype=np.int64)
    for value, weight in zip([None, *values.values], weights.tolist(), strict=True):
        if weight:
            total += np.asarray(layout.count(np.array([value], dtype=object)), dtype=np.int64) * weight
    return total


@dataclass(frozen=True)
class _Layout:
    name: str
    kind: str
    column: int
    labels: list[str]
    expected: np.ndarray
    inner: np.ndarray | None = None
    index: dict[str, int] | None = None

    def count(self, values: np.ndarray | Sequence[object]) -> np.ndarray:
        out = np.zeros(len(self.labels), dtype=np.int64)
        if self.index is not None:
            unseen = len(self.labels) - 1
            slots = [0 if v is None or (isinstance(v, float) and v != v) else self.index.get(str(v), unseen)
                     for v in np.asarray(values, dtype=object).tolist()]
            out += np.bincount(np.asarray(slots, dtype=np.int64), minlength=len(self.labels))
            return out
        array = np.asarray(values, dtype=np.float64)
        missing = np.isnan(array)
        out[0] = int(missing.sum())
        assert self.inner is not None
        slots = np.searchsorted(self.inner, array[~missing], side="right")
        out[1:] += np.bincount(slots, minlength=len(self.labels) - 1)
        return out
