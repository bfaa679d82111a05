"""Retraining pipeline of the ONNX diabetes example: `kaizen retrain examples/diabetes_pipeline.py
--data new.csv --champion examples/diabetes-regressor --out packages/`. The candidate is a Ridge
regression converted to ONNX (deterministic bytes); the gate is "RMSE not worse than the champion's
by more than `margin`" on the same holdout rows (model_packages/retrain/gate.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from model_packages.retrain import Pipeline

pipeline = Pipeline("diabetes-regressor", params={"alpha": 1.0, "holdout": 0.25, "margin": 5.0, "seed": 0})
TARGET = "progression"


@pipeline.step
def load(data: Path) -> Any:
    import pandas as pd

    return pd.read_csv(data)


@pipeline.step
def validate(load: Any, champion: Path) -> Any:
    from model_packages.retrain.steps import validate_against_package

    return validate_against_package(load, champion, TARGET)


@pipeline.step
def split(validate: Any, holdout: float, seed: int) -> Any:
    from model_packages.retrain.steps import holdout_split

    return holdout_split(validate, TARGET, holdout, seed)


@pipeline.step
def train(split: Any, alpha: float) -> Any:
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x_train, y_train, _, _ = split
    return make_pipeline(StandardScaler(), Ridge(alpha=alpha)).fit(x_train.to_numpy(), y_train.to_numpy())


@pipeline.step
def gate(train: Any, split: Any, champion: Path, margin: float, seed: int) -> Any:
    from model_packages.retrain.gate import GateSpec
    from model_packages.retrain.steps import gate_against_champion

    spec = GateSpec(metric="rmse", policy="not_worse", margin=margin, seed=seed)
    return gate_against_champion(train, split, champion, spec)


@pipeline.step
def package(train: Any, split: Any, gate: Any, champion: Path, work_dir: Path, alpha: float,
            version: str | None) -> Any:
    from model_packages.compile import sklearn_to_onnx
    from model_packages.retrain.steps import package_candidate

    onnx_model = sklearn_to_onnx(train, split[0].shape[1])
    return package_candidate(onnx_model, split, gate, champion, work_dir, parameters={"alpha": alpha},
                             version=version)
