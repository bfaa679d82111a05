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

import numpy as np

TAIL_SIGMAS = 14.0  # tail probabilities beyond this many standard deviations are below 1e-40
FLOOR = 1e-300
MAX_STATISTIC = 300.0


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
        x = self.low[:, None] + np.arange(width)[None, :]
        valid = x <= n
        xs = np.minimum(x, n).astype(np.float64)
        if total is None:
            logfact = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n + 1, dtype=np.float64)))])
            ix = xs.astype(np.int64)
            logpmf = (logfact[n] - logfact[ix] - logfact[n - ix]
                      + xs * np.log(p)[:, None] + (n - xs) * np.log1p(-p)[:, None])
        else:
            logpmf = _beta_binomial_logpmf(n, p * total, (1 - p) * total, self.low, xs)
        pmf = np.where(valid, np.exp(logpmf), 0.0)
        # P(X <= x) and P(X >= x) for x = low .. low + width - 1 (mass outside the table is < 1e-40).
        self.lower = np.minimum(np.cumsum(pmf, axis=1), 1.0)
        self.upper = np.minimum(np.cumsum(pmf[:, ::-1], axis=1)[:, ::-1], 1.0)
        self.upper[~valid] = 0.0
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

    def slot_sizes(self, levels: np.ndarray | float) -> np.ndarray:
        """Achieved false-alarm probability of each slot's two-tailed test at `levels` (one number,
        one per feature or one per slot)."""
        array = np.asarray(levels, dtype=np.float64)
        if array.ndim == 1 and array.size == self.features:
            array = array[self.groups]
        limit = np.broadcast_to(array, self.low.shape)[:, None]
        up = np.where(self.upper <= limit, self.upper, 0.0).max(axis=1)
        down = np.where(self.lower <= limit, self.lower, 0.0).max(axis=1)
        return np.minimum(up + down, 1 - 1e-16)

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
        key = float(f"{alpha:.4g}")
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
        tables = np.concatenate([self.upper, self.lower], axis=1)
        for _ in range(4 * self.features):
            slot_levels = levels[self.groups]
            above = np.where(tables > slot_levels[:, None], tables, np.inf).min(axis=1)
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
        return levels


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
