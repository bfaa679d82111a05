"""Retraining pipeline of the churn example (a DataFrame pipeline with a categorical plan and gaps):
`kaizen retrain examples/churn_pipeline.py --data new.csv --champion examples/churn-classifier
--out packages/`. Each step is a plain function; its arguments name earlier steps or parameters
(model_packages/retrain/pipeline.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from model_packages.retrain import Pipeline

pipeline = Pipeline("churn-classifier", params={"C": 1.0, "max_iter": 500, "holdout": 0.3, "seed": 0})
TARGET = "churned"


@pipeline.step
def load(data: Path) -> Any:
    import pandas as pd

    return pd.read_csv(data, dtype={"plan": "str"})


@pipeline.step
def validate(load: Any, champion: Path) -> Any:
    """The new data must have the champion's columns (and the target); numbers are range-checked."""
    from model_packages.retrain.steps import validate_against_package

    return validate_against_package(load, champion, TARGET)


@pipeline.step
def split(validate: Any, holdout: float, seed: int) -> Any:
    from model_packages.retrain.steps import holdout_split

    return holdout_split(validate, TARGET, holdout, seed)


@pipeline.step
def train(split: Any, C: float, max_iter: int, seed: int) -> Any:
    """Impute and scale the numbers, one-hot the plan (unknown plans ignored), logistic regression."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline as SkPipeline
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    x_train, y_train, _, _ = split
    columns = ColumnTransformer([
        ("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()),
         ["tenure_months", "monthly_charges"]),
        ("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
    ])
    model = SkPipeline([("columns", columns),
                        ("model", LogisticRegression(C=C, max_iter=max_iter, random_state=seed))])
    return model.fit(x_train, y_train)


@pipeline.step
def gate(train: Any, split: Any, champion: Path, seed: int) -> Any:
    from model_packages.retrain.gate import GateSpec
    from model_packages.retrain.steps import gate_against_champion

    return gate_against_champion(train, split, champion, GateSpec(metric="accuracy", seed=seed))


@pipeline.step
def package(train: Any, split: Any, gate: Any, champion: Path, work_dir: Path, C: float, max_iter: int,
            version: str | None) -> Any:
    from model_packages.retrain.steps import package_candidate

    return package_candidate(train, split, gate, champion, work_dir, parameters={"C": C, "max_iter": max_iter},
                             version=version)
