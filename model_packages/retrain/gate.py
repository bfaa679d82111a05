"""The promotion gate: MLflow's threshold vocabulary plus a paired bootstrap on the same holdout rows.

Both models predict the same holdout rows; the metric difference (challenger minus champion,
oriented so that positive is better) is resampled `resamples` times with one seeded generator, and
the gate reads the two-sided `confidence` interval:

* policy ``better`` (default): promote only if the interval's lower bound exceeds
  ``min_absolute_change`` (default 0), i.e. a one-sided test at (1 - confidence) / 2. Two equally
  good models are promoted about 2.5% of the time at 95%.
* policy ``not_worse``: promote if the lower bound is >= -``margin`` (for a retrain on fresh data
  that must not lose accuracy).

``threshold`` (the challenger's metric must reach it), ``min_absolute_change`` and
``min_relative_change`` (on the point estimates, against the champion) mean what they mean in
``mlflow.models.MetricThreshold``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

Metric = Callable[[np.ndarray, np.ndarray], float]


def accuracy(y: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.mean(y == predicted))


def rmse(y: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(y, float) - np.asarray(predicted, float)) ** 2)))


def mae(y: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(y, float) - np.asarray(predicted, float))))


# name -> (function, greater_is_better, per-row loss for a vectorised bootstrap or None)
METRICS: dict[str, tuple[Metric, bool]] = {"accuracy": (accuracy, True), "rmse": (rmse, False), "mae": (mae, False)}


@dataclass(frozen=True)
class GateSpec:
    metric: str = "accuracy"
    greater_is_better: bool | None = None  # default: the metric's own direction
    threshold: float | None = None
    min_absolute_change: float | None = None
    min_relative_change: float | None = None
    policy: Literal["better", "not_worse"] = "better"
    margin: float = 0.0
    resamples: int = 1000
    confidence: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"gate metric {self.metric!r} is not one of {', '.join(METRICS)}")
        if self.resamples < 1000:
            raise ValueError(f"gate resamples {self.resamples}: at least 1000")
        if not 0.5 < self.confidence < 1:
            raise ValueError(f"gate confidence {self.confidence} is not in (0.5, 1)")
        if self.margin < 0:
            raise ValueError(f"gate margin {self.margin} is negative")

    @property
    def higher_is_better(self) -> bool:
        return METRICS[self.metric][1] if self.greater_is_better is None else self.greater_is_better


@dataclass
class GateResult:
    promote: bool
    metric: str
    champion: float
    challenger: float
    improvement: float  # oriented: positive is better
    interval: tuple[float, float]
    rows: int
    reasons: list[str] = field(default_factory=list)
    spec: dict[str, Any] = field(default_factory=dict)

    def report(self) -> str:
        verdict = "PROMOTE" if self.promote else "REJECT"
        low, high = self.interval
        lines = [
            f"# Promotion gate: {verdict}",
            "",
            f"- metric: {self.metric} on {self.rows} holdout rows (paired)",
            f"- champion {self.champion:.6g}, challenger {self.challenger:.6g}, "
            f"improvement {self.improvement:+.6g}",
            f"- {self.spec['confidence']:.0%} bootstrap interval of the improvement ({self.spec['resamples']} "
            f"resamples, seed {self.spec['seed']}): [{low:+.6g}, {high:+.6g}]",
            f"- policy {self.spec['policy']}",
        ]
        lines += [f"- failed: {reason}" for reason in self.reasons]
        return "\n".join(lines) + "\n"


def _bootstrap(y: np.ndarray, champion: np.ndarray, challenger: np.ndarray, spec: GateSpec) -> np.ndarray:
    """The oriented improvement on each resample of the holdout rows (the same rows for both models)."""
    function, _ = METRICS[spec.metric]
    sign = 1.0 if spec.higher_is_better else -1.0
    rng = np.random.default_rng(spec.seed)
    n = y.shape[0]
    indices = rng.integers(0, n, size=(spec.resamples, n))
    if spec.metric == "accuracy":  # per-row terms: one vectorised pass
        terms = (challenger == y).astype(float) - (champion == y).astype(float)
        return sign * terms[indices].mean(axis=1)
    return np.array([sign * (function(y[i], challenger[i]) - function(y[i], champion[i])) for i in indices])


def evaluate(y: Any, champion: Any, challenger: Any, spec: GateSpec | None = None) -> GateResult:
    """Gate `challenger` predictions against `champion` predictions of the same holdout rows `y`."""
    spec = spec or GateSpec()
    y, champion, challenger = (np.asarray(a) for a in (y, champion, challenger))
    if not (y.shape[0] == champion.shape[0] == challenger.shape[0]) or y.shape[0] < 2:
        raise ValueError(f"gate needs the same >= 2 holdout rows for both models (got {y.shape[0]}, "
                         f"{champion.shape[0]}, {challenger.shape[0]})")
    function, _ = METRICS[spec.metric]
    sign = 1.0 if spec.higher_is_better else -1.0
    base, cand = function(y, champion), function(y, challenger)
    improvement = sign * (cand - base)
    alpha = (1 - spec.confidence) / 2
    low, high = (float(q) for q in np.quantile(_bootstrap(y, champion, challenger, spec), [alpha, 1 - alpha]))
    reasons: list[str] = []
    if spec.threshold is not None and sign * (cand - spec.threshold) < 0:
        reasons.append(f"{spec.metric} {cand:.6g} does not reach the threshold {spec.threshold:.6g}")
    if spec.min_absolute_change is not None and improvement < spec.min_absolute_change:
        reasons.append(f"improvement {improvement:+.6g} is below min_absolute_change {spec.min_absolute_change:.6g}")
    if spec.min_relative_change is not None and improvement < spec.min_relative_change * abs(base):
        reasons.append(f"relative improvement {improvement / abs(base) if base else float('inf'):+.4g} is below "
                       f"min_relative_change {spec.min_relative_change:.4g}")
    if spec.policy == "better" and not low > (spec.min_absolute_change or 0.0):
        reasons.append(f"the interval's lower bound {low:+.6g} does not show an improvement above "
                       f"{spec.min_absolute_change or 0.0:.6g}")
    if spec.policy == "not_worse" and low < -spec.margin:
        reasons.append(f"the interval's lower bound {low:+.6g} is worse than the margin -{spec.margin:.6g}")
    return GateResult(not reasons, spec.metric, base, cand, improvement, (low, high), int(y.shape[0]), reasons,
                      asdict(spec))
