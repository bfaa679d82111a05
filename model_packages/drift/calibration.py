"""The calibrated alarm: exact binomial tail tests on every counter slot, sized for a window.

Under the null (live rows drawn from the baseline), the count in slot k of a window of n rows is
Binomial(n, p_k). A slot is significant when either tail probability of its count is at most a
per-slot level `a`; the window alarms when any slot of any feature is. Counts are discrete, so the
achieved size of slot k, s_k(a) (the largest tail probability <= a, both tails), is below `a`,
and far below it for rare slots at small n. `a` is therefore solved (bisection on a log scale) so
that the window's false-alarm probability, 1 - prod_k (1 - s_k(a)) (Sidak over all slots of all
features), equals the requested alpha: exact per slot, and close to exact overall because the
rare events of different slots are almost independent (multinomial slots are negatively
correlated, which only makes the union bound tighter).

Decile bins give most slots the same probability (about 0.1), so at small n the achievable sizes
jump in large, simultaneous steps and a common level would stay well below alpha. The budget left
under the common level is therefore spent deterministically: whole features are raised, one step
at a time (cheapest first), to their next achievable level while the window's size stays <= alpha.
Each feature thus has its own level (and threshold).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

TAIL_SIGMAS = 10.0  # tail probabilities beyond this many standard deviations (+12 rows) are negligible
FLOOR = 1e-300
MAX_STATISTIC = 300.0
ALPHA_STEPS = 20  # grid of window false-alarm probabilities per decade
LEVEL_CACHE = 64  # solved (alpha grid value -> levels) kept per window size
TABLE_BLOCK = 1 << 19  # table entries (slots x width) computed at once
PARALLEL_TABLE = 1 << 23  # tables with at least this many entries are computed on two threads
DENSE_WIDTH = 512  # tail tables up to this wide are searched by counting, wider ones by bisection


class Calibration:
    """Tail tables and the solved per-slot level for windows of exactly `n` rows."""

    def __init__(self, expected: np.ndarray, n: int, groups: np.ndarray | None = None,
                 concentration: np.ndarray | None = None) -> None:
        """`expected`: the baseline probabilities of every slot of every feature, concatenated;
        `groups`: the feature index of each slot (default: one feature); `concentration`: per slot,
        the training rows (plus prior pseudo-counts) the probability was estimated from. With it a
        slot's count is Beta-binomial (the baseline's own sampling error is part of the null: the
        Dirichlet posterior of the training counts, Jeffreys prior); without it, Binomial."""
        if n < 1:
            raise ValueError("a window needs at least one row")
        p = np.clip(np.asarray(expected, dtype=np.float64), 1e-12, 1.0 - 1e-12)
        self.n = n
        var = n * p * (1 - p)
        total = None if concentration is None else np.asarray(concentration, dtype=np.float64)
        if total is not None:
            var = var * (total + n) / (total + 1)
        sigma = np.sqrt(var)
        self.low = np.clip(np.floor(n * p - TAIL_SIGMAS * sigma - 12), 0, n).astype(np.int64)
        high = np.clip(np.ceil(n * p + TAIL_SIGMAS * sigma + 12), 0, n).astype(np.int64)
        width = int((high - self.low).max()) + 1
        # P(X <= x) and P(X >= x) for x = low .. low + width - 1 (mass outside the table is negligible),
        # a block of slots at a time (the temporaries stay small), on two threads for big tables.
        self.lower = np.empty((p.size, width))
        self.upper = np.empty((p.size, width))
        logfact = None
        if total is None:
            logfact = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n + 1, dtype=np.float64)))])
        blocks = [slice(i, min(i + max(1, TABLE_BLOCK // width), p.size))
                  for i in range(0, p.size, max(1, TABLE_BLOCK // width))]

        def fill(block: slice) -> None:
            self.lower[block], self.upper[block] = _tables(n, p[block], None if total is None else total[block],
                                                           self.low[block], width, logfact)

        if p.size * width >= PARALLEL_TABLE and len(blocks) > 1 and (os.cpu_count() or 1) > 1:
            with ThreadPoolExecutor(max_workers=2, thread_name_prefix="kaizen-calibration") as pool:
                list(pool.map(fill, blocks))
        else:
            for block in blocks:
                fill(block)
        self.width = width
        self.groups = np.zeros(p.size, dtype=np.int64) if groups is None else np.asarray(groups, dtype=np.int64)
        self.features = int(self.groups.max()) + 1 if p.size else 0
        self._levels: dict[float, np.ndarray] = {}

    def tails(self, counts: np.ndarray) -> np.ndarray:
        """The smaller tail probability of each slot's count; `counts` is (..., slots)."""
        counts = np.asarray(counts, dtype=np.int64)
        j = counts - self.low
        inside = (j >= 0) & (j < self.width)
        jj = np.clip(j, 0, self.width - 1)
        rows = np.broadcast_to(np.arange(self.low.size), counts.shape)
        lower = np.where(inside, self.lower[rows, jj], np.where(j < 0, FLOOR, 1.0))
        upper = np.where(inside, self.upper[rows, jj], np.where(j < 0, 1.0, FLOOR))
        return np.maximum(np.minimum(lower, upper), FLOOR)

    def _slot_levels(self, levels: np.ndarray | float) -> np.ndarray:
        array = np.asarray(levels, dtype=np.float64)
        if array.ndim == 1 and array.size == self.features:
            array = array[self.groups]
        return np.broadcast_to(array, self.low.shape)

    def _prefix(self, table: np.ndarray, limit: np.ndarray, upper: bool) -> np.ndarray:
        """Per slot, how many leading entries of its row of `table` are above `limit` (`upper`: the
        non-increasing upper tails) or at most `limit` (the non-decreasing lower tails). Both hold on
        a prefix of the row, so a binary search per row finds it: O(log width), not O(width) (narrow
        tables are simply counted: fewer numpy calls)."""
        if self.width <= DENSE_WIDTH:
            inside = (table > limit[:, None]) if upper else (table <= limit[:, None])
            return inside.sum(axis=1)
        rows = np.arange(table.shape[0])
        lo = np.zeros(table.shape[0], dtype=np.int64)
        hi = np.full(table.shape[0], self.width, dtype=np.int64)
        while True:
            active = lo < hi
            if not active.any():
                return lo
            mid = (lo + hi) // 2
            value = table[rows, np.minimum(mid, self.width - 1)]
            inside = (value > limit) if upper else (value <= limit)
            step = active & inside
            lo = np.where(step, mid + 1, lo)
            hi = np.where(active & ~inside, mid, hi)

    def _at(self, table: np.ndarray, index: np.ndarray, default: float) -> np.ndarray:
        inside = (index >= 0) & (index < self.width)
        value = table[np.arange(table.shape[0]), np.clip(index, 0, self.width - 1)]
        return np.where(inside, value, default)

    def slot_sizes(self, levels: np.ndarray | float) -> np.ndarray:
        """Achieved false-alarm probability of each slot's two-tailed test at `levels` (one number,
        one per feature or one per slot): the largest upper and the largest lower tail probability
        that are at most the level (0 when none is)."""
        limit = self._slot_levels(levels)
        up = self._at(self.upper, self._prefix(self.upper, limit, upper=True), 0.0)
        down = self._at(self.lower, self._prefix(self.lower, limit, upper=False) - 1, 0.0)
        return np.minimum(up + down, 1 - 1e-16)

    def next_levels(self, levels: np.ndarray | float) -> np.ndarray:
        """Per slot, the smallest tail probability (either tail) above its level: the next level
        at which its achieved size grows (inf when none is)."""
        limit = self._slot_levels(levels)
        up = self._at(self.upper, self._prefix(self.upper, limit, upper=True) - 1, np.inf)
        down = self._at(self.lower, self._prefix(self.lower, limit, upper=False), np.inf)
        return np.minimum(up, down)

    def feature_log_quiet(self, levels: np.ndarray | float) -> np.ndarray:
        """log P(no slot of the feature alarms), per feature, at `levels` (as in `slot_sizes`)."""
        return np.bincount(self.groups, weights=np.log1p(-self.slot_sizes(levels)), minlength=self.features)

    def window_size(self, levels: np.ndarray | float) -> float:
        """The false-alarm probability of a window at `levels` (as in `slot_sizes`)."""
        return float(-np.expm1(self.feature_log_quiet(levels).sum()))

    def level(self, alpha: float) -> np.ndarray:
        """Per-feature levels whose window false-alarm probability is as close to `alpha` as the
        discrete counts allow, never above it."""
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), not {alpha}")
        # Windows closed by count have arbitrary durations (alpha = duration / period): alpha is
        # rounded onto a grid of ALPHA_STEPS per decade (within 6%), so the cache of
        # solved levels stays small and each grid value is solved once.
        key = 10.0 ** (round(math.log10(alpha) * ALPHA_STEPS) / ALPHA_STEPS)
        cached = self._levels.get(key)
        if cached is not None:
            return cached
        lo, hi = math.log(key / max(1, self.low.size) / 1e3), math.log(key)
        for _ in range(40):  # the size is a step function: converge onto the largest level that fits
            mid = (lo + hi) / 2
            if self.window_size(math.exp(mid)) <= key:
                lo = mid
            else:
                hi = mid
        levels = np.full(self.features, math.exp(lo))
        budget = math.log1p(-key)  # log P(quiet window) must stay >= this
        quiet = self.feature_log_quiet(levels[self.groups])
        for _ in range(4 * self.features):
            above = self.next_levels(levels[self.groups])
            step = np.full(self.features, np.inf)
            np.minimum.at(step, self.groups, above)  # each feature's next achievable level
            trial = np.where(np.isfinite(step), step, levels)
            trial_quiet = self.feature_log_quiet(trial[self.groups])
            cost = quiet - trial_quiet  # extra log-probability of an alarm, per feature
            order = np.argsort(np.where(np.isfinite(step), cost, np.inf))
            raised = False
            for f in order:
                if not np.isfinite(step[f]) or quiet.sum() - cost[f] < budget:
                    continue
                levels[f] = step[f]
                quiet[f] = trial_quiet[f]
                raised = True
            if not raised:
                break
        self._levels[key] = levels
        while len(self._levels) > LEVEL_CACHE:
            del self._levels[next(iter(self._levels))]
        return levels


def _tables(n: int, p: np.ndarray, total: np.ndarray | None, low: np.ndarray, width: int,
            logfact: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(P(X <= x), P(X >= x)) of slots with probabilities `p` on x = low .. low + width - 1."""
    x = low[:, None] + np.arange(width)[None, :]
    valid = x <= n
    xs = np.minimum(x, n).astype(np.float64)
    if total is None:
        assert logfact is not None
        ix = xs.astype(np.int64)
        logpmf = (logfact[n] - logfact[ix] - logfact[n - ix]
                  + xs * np.log(p)[:, None] + (n - xs) * np.log1p(-p)[:, None])
    else:
        logpmf = _beta_binomial_logpmf(n, p * total, (1 - p) * total, low, xs)
    pmf = np.where(valid, np.exp(logpmf), 0.0)
    lower = np.minimum(np.cumsum(pmf, axis=1), 1.0)
    upper = np.minimum(np.cumsum(pmf[:, ::-1], axis=1)[:, ::-1], 1.0)
    upper[~valid] = 0.0
    return lower, upper


def _beta_binomial_logpmf(n: int, a: np.ndarray, b: np.ndarray, low: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """log P(X = x) of Beta-binomial(n, a, b) on rows x = low .. low + width - 1 (clipped at n):
    exact at `low` (math.lgamma, once per slot), then the pmf ratio recursion, in logs."""
    lg = np.vectorize(math.lgamma, otypes=[np.float64])
    k = low.astype(np.float64)
    start = (lg(n + 1.0) - lg(k + 1) - lg(n - k + 1)
             + lg(k + a) + lg(n - k + b) - lg(n + a + b) + lg(a + b) - lg(a) - lg(b))
    x = xs[:, :-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (np.log(np.maximum(n - x, 0.0)) + np.log(x + a[:, None])
                 - np.log(x + 1) - np.log(n - x - 1 + b[:, None]))
    ratio = np.where(x < n, ratio, -np.inf)  # beyond n the table is invalid anyway
    steps = np.concatenate([np.zeros((low.size, 1)), np.cumsum(ratio, axis=1)], axis=1)
    return start[:, None] + steps


def statistic(tail: np.ndarray | float) -> np.ndarray:
    """-log10 of a tail probability (what is compared with -log10 of the level)."""
    return np.minimum(-np.log10(np.maximum(tail, FLOOR)), MAX_STATISTIC)


def per_window_alpha(false_alarm_days: float, window_seconds: float) -> float:
    """The false-alarm probability per window that gives one false alarm per `false_alarm_days`
    when a window closes every `window_seconds`."""
    if false_alarm_days <= 0 or window_seconds <= 0:
        raise ValueError("false_alarm_days and window_seconds must be positive")
    return min(0.5, window_seconds / (false_alarm_days * 86_400.0))
