"""Per-request feature statistics in the serving path, compared with the training baseline.

The hot path only appends the validated matrix to a buffer (well under a microsecond); binning and
the Population Stability Index are computed lazily, when the buffer fills or metrics are read.
"""

from __future__ import annotations

import threading
from collections import deque

import numpy as np

from model_packages.manifest import Manifest

EPSILON = 1e-4  # floor on bin fractions, so empty bins do not make PSI infinite
FLUSH_ROWS = 2048


def psi(expected: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """Population Stability Index per row of two (features x bins) fraction matrices."""
    e = np.clip(expected, EPSILON, None)
    a = np.clip(actual, EPSILON, None)
    return np.sum((a - e) * np.log(a / e), axis=-1)



class FeatureStats:
    """Sliding-window histograms of live features on the baseline's bins.

    Numeric features use the baseline's decile edges; string categorical features use one bin per
    training category plus an "unseen" bin (expected fraction 0, floored at EPSILON), so the PSI
    of a categorical feature rises when new categories appear or frequencies move."""

    def __init__(self, manifest: Manifest, window_rows: int = 5000, min_rows: int = 100) -> None:
        self.window_rows = window_rows
        self.min_rows = min_rows
        self.columns: list[int] = []
        self.cat_columns: list[int] = []
        self.cat_bins: list[dict[str, int]] = []
        self.names: list[str] = []
        cat_names: list[str] = []
        edges: list[list[float]] = []
        fractions: list[list[float]] = []
        cat_fractions: list[list[float]] = []
        for i, spec in enumerate(manifest.inputs):
            base = manifest.baseline.features.get(spec.name)
            if base is None:
                continue
            if base.category_fractions and spec.dtype == "categorical" and not spec.numeric_categories:
                categories = [str(c) for c in spec.categories or []]
                self.cat_columns.append(i)
                cat_names.append(spec.name)
                self.cat_bins.append({c: k for k, c in enumerate(categories)})
                cat_fractions.append([base.category_fractions.get(c, 0.0) for c in categories] + [0.0])
            elif base.bin_edges and base.bin_fractions:
                self.columns.append(i)
                self.names.append(spec.name)
                edges.append(base.bin_edges)
                fractions.append(base.bin_fractions)
        self.names.extend(cat_names)
        all_fractions = fractions + cat_fractions
        bins = max((len(f) for f in all_fractions), default=1)
        # Pad edges with +inf so every numeric feature uses the same number of bins.
        self.edges = np.full((len(edges), bins - 1), np.inf)
        for k, e in enumerate(edges):
            self.edges[k, : len(e)] = e
        self.expected = np.zeros((len(all_fractions), bins))
        for k, f in enumerate(all_fractions):
            self.expected[k, : len(f)] = f
        self.bins = bins
        self._pending: list[np.ndarray] = []
        self._pending_rows = 0
        self._window: deque[tuple[int, np.ndarray]] = deque()
        self._counts = np.zeros((len(all_fractions), bins))
        self._rows = 0
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return bool(self.names)

    def observe(self, rows: np.ndarray) -> None:
        """Hot-path hook: remember a validated matrix (float, or object with string columns)."""
        if not self.names or rows.ndim != 2:
            return
        self._pending.append(rows)
        self._pending_rows += rows.shape[0]
        if self._pending_rows >= FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        """Bin pending rows into the window and drop what has slid out of it."""
        with self._lock:
            if not self._pending:
                return
            batch = np.concatenate(self._pending)
            self._pending.clear()
            self._pending_rows = 0
            counts = np.zeros_like(self._counts)
            numeric = batch[:, self.columns].astype(np.float64)
            for k in range(len(self.columns)):
                values = numeric[:, k]
                values = values[~np.isnan(values)]
                idx = np.searchsorted(self.edges[k], values, side="right")
                counts[k] += np.bincount(idx, minlength=self.bins)[: self.bins]
            offset = len(self.columns)
            for k, (col, index) in enumerate(zip(self.cat_columns, self.cat_bins, strict=True)):
                unseen = len(index)
                row = counts[offset + k]
                for value in batch[:, col].tolist():
                    if isinstance(value, str):  # missing values (NaN/None) are not counted
                        row[index.get(value, unseen)] += 1
            self._window.append((batch.shape[0], counts))
            self._counts += counts
            self._rows += batch.shape[0]
            while self._window and self._rows - self._window[0][0] >= self.window_rows:
                dropped_rows, dropped = self._window.popleft()
                self._counts -= dropped
                self._rows -= dropped_rows

    def scores(self) -> dict[str, float]:
        """PSI per feature over the window; empty until `min_rows` rows have been seen."""
        self.flush()
        with self._lock:
            if self._rows < self.min_rows or not self.names:
                return {}
            totals = self._counts.sum(axis=1, keepdims=True)
            actual = np.divide(self._counts, totals, out=np.zeros_like(self._counts), where=totals > 0)
            values = psi(self.expected, actual)
        return {name: float(v) for name, v in zip(self.names, values, strict=True)}

    def unseen_fractions(self) -> dict[str, float]:
        """Per categorical feature, the share of the window's values that training never saw."""
        self.flush()
        offset = len(self.columns)
        with self._lock:
            out: dict[str, float] = {}
            for k, index in enumerate(self.cat_bins):
                row = self._counts[offset + k]
                total = row.sum()
                out[self.names[offset + k]] = float(row[len(index)] / total) if total else 0.0
        return out

    def unseen_fraction(self, name: str) -> float:
        return self.unseen_fractions()[name]

    @property
    def window_rows_seen(self) -> int:
        return self._rows + self._pending_rows
