"""Per-request feature statistics in the serving path, compared with the training baseline.

The hot path only appends the validated matrix to a buffer (well under a microsecond); binning and
the Population Stability Index are computed lazily, when the buffer fills or metrics are read.

No single request decides the score: each contributes at most REQUEST_SHARE of the window (a big
batch is sampled evenly). The window is a short deque of merged histograms, so frequent scrapes do
not grow memory. With several worker processes each publishes its window histogram to a shared
directory and every worker scores the sum.
"""

from __future__ import annotations

import math
import os
import threading
from collections import deque
from pathlib import Path

import numpy as np

from model_packages.manifest import Manifest

EPSILON = 1e-4  # floor on bin fractions, so empty bins do not make PSI infinite
FLUSH_ROWS = 2048
REQUEST_SHARE = 0.02  # the largest part of the window one request may fill
WINDOW_ENTRIES = 16  # the window slides in steps of about window_rows / WINDOW_ENTRIES


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

    def __init__(self, manifest: Manifest, window_rows: int = 5000, min_rows: int = 100,
                 share_dir: Path | None = None, worker: int = 0) -> None:
        self.window_rows = window_rows
        self.min_rows = min_rows
        self.request_rows = max(1, math.ceil(window_rows * REQUEST_SHARE))
        self.entry_rows = max(1, min(FLUSH_ROWS, window_rows // WINDOW_ENTRIES))
        self.share_dir = share_dir
        self.share_path = share_dir / f"drift-{worker}.npy" if share_dir else None
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
        """Hot-path hook: remember a validated matrix (float, or object with string columns; an even
        sample of a big batch)."""
        if not self.names or rows.ndim != 2:
            return
        if rows.shape[0] > self.request_rows:
            rows = rows[:: math.ceil(rows.shape[0] / self.request_rows)]
        with self._lock:
            self._pending.append(rows)
            self._pending_rows += rows.shape[0]
            full = self._pending_rows >= FLUSH_ROWS
        if full:
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
            if self._window and self._window[-1][0] < self.entry_rows:  # merge small flushes (frequent scrapes)
                last_rows, last = self._window.pop()
                self._window.append((last_rows + batch.shape[0], last + counts))
            else:
                self._window.append((batch.shape[0], counts))
            self._counts += counts
            self._rows += batch.shape[0]
            while self._window and self._rows - self._window[0][0] >= self.window_rows:
                dropped_rows, dropped = self._window.popleft()
                self._counts -= dropped
                self._rows -= dropped_rows
            self._publish()

    def _publish(self) -> None:
        """Write this worker's window histogram for the others (atomically: write, then rename)."""
        if self.share_path is None:
            return
        tmp = self.share_path.with_suffix(f".{os.getpid()}.tmp")
        with open(tmp, "wb") as out:
            np.save(out, np.concatenate([[float(self._rows)], self._counts.ravel()]))
        os.replace(tmp, self.share_path)

    def _combined(self) -> tuple[np.ndarray, int]:
        """This worker's window plus what the other workers last published."""
        counts, rows = self._counts.copy(), self._rows
        if self.share_dir is None:
            return counts, rows
        for path in self.share_dir.glob("drift-*.npy"):
            if path == self.share_path:
                continue
            try:
                published = np.load(path)
            except (OSError, ValueError, EOFError):
                continue
            if published.shape == (1 + counts.size,):
                rows += int(published[0])
                counts += published[1:].reshape(counts.shape)
        return counts, rows

    def scores(self) -> dict[str, float]:
        """PSI per feature over the window; empty until `min_rows` rows have been seen."""
        self.flush()
        with self._lock:
            counts, rows = self._combined()
        if rows < self.min_rows or not self.names:
            return {}
        totals = counts.sum(axis=1, keepdims=True)
        actual = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
        values = psi(self.expected, actual)
        return {name: float(v) for name, v in zip(self.names, values, strict=True)}

    def unseen_fractions(self) -> dict[str, float]:
        """Per categorical feature, the share of the window's values that training never saw."""
        self.flush()
        offset = len(self.columns)
        with self._lock:
            counts, _ = self._combined()  # every worker's window, like psi()
            out: dict[str, float] = {}
            for k, index in enumerate(self.cat_bins):
                row = counts[offset + k]
                total = row.sum()
                out[self.names[offset + k]] = float(row[len(index)] / total) if total else 0.0
        return out

    def unseen_fraction(self, name: str) -> float:
        return self.unseen_fractions()[name]

    @property
    def window_rows_seen(self) -> int:
        with self._lock:
            return self._combined()[1] + self._pending_rows
