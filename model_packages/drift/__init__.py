"""Drift of live traffic against the training baseline: counters, distances and a calibrated alarm.

numpy and the standard library only: this package runs inside the serving image."""

from model_packages.drift.calibration import Calibration, per_window_alpha
from model_packages.drift.counters import PREDICTION, FeatureLayout, feature_layouts
from model_packages.drift.state import DriftState, FeatureScore, Verdict

__all__ = ["PREDICTION", "Calibration", "DriftState", "FeatureLayout", "FeatureScore", "Verdict",
           "feature_layouts", "per_window_alpha"]
