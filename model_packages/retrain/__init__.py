"""Retraining: a content-versioned pipeline of plain Python steps and a statistical promotion gate."""

from model_packages.retrain.pipeline import Pipeline

__all__ = ["Pipeline"]
