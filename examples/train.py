"""Train the example models on data that scikit-learn ships and write them as model packages.

Run: `python examples/train.py` (writes examples/iris-classifier, examples/diabetes-regressor and
examples/churn-classifier).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_diabetes, load_iris, make_classification
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from model_packages.package import create_package, sklearn_to_onnx

HERE = Path(__file__).resolve().parent


def iris_classifier(out: Path, version: str = "1.0.0", c: float = 1.0) -> Path:
    """Logistic regression on iris, saved with skops."""
    data: Any = load_iris()
    names = [n.replace(" (cm)", "").replace(" ", "_") for n in data.feature_names]
    species = data.target_names[data.target]
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, species, test_size=0.25, random_state=0, stratify=species
    )
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=500)).fit(x_train, y_train)
    return create_package(
        model,
        x_train,
        y_train,
        out_dir=out,
        name="iris-classifier",
        version=version,
        feature_names=names,
        ranges={n: (0.0, 100.0) for n in names},
        metrics={"test_accuracy": float(accuracy_score(y_test, model.predict(x_test)))},
        parameters={"C": c, "max_iter": 500, "random_state": 0},
        description="Iris species from sepal and petal measurements (cm)",
        overwrite=True,
    )


def diabetes_regressor(out: Path, version: str = "1.0.0") -> Path:
    """Ridge regression on the diabetes data, converted to ONNX."""
    data: Any = load_diabetes()
    x_train, x_test, y_train, y_test = train_test_split(data.data, data.target, test_size=0.25, random_state=0)
    model = make_pipeline(StandardScaler(), Ridge(alpha=1.0)).fit(x_train, y_train)
    return create_package(
        sklearn_to_onnx(model, len(data.feature_names)),
        x_train,
        y_train,
        out_dir=out,
        name="diabetes-regressor",
        version=version,
        feature_names=list(data.feature_names),
        ranges={n: (-1.0, 1.0) for n in data.feature_names},
        task="regression",
        metrics={"test_r2": float(r2_score(y_test, model.predict(x_test)))},
        parameters={"alpha": 1.0},
        description="Disease progression one year after baseline (ONNX)",
        overwrite=True,
    )


def churn_frame(rows: int = 600, seed: int = 0) -> tuple[Any, Any]:
    """A synthetic churn table (pandas DataFrame) from scikit-learn's `make_classification`: two
    numeric columns with about 5% missing values and a string plan; the target `churned` (yes/no)."""
    import numpy as np
    import pandas as pd

    generated: Any = make_classification(n_samples=rows, n_features=3, n_informative=3, n_redundant=0,
                                         class_sep=1.5, random_state=seed)
    x, y = np.asarray(generated[0]), np.asarray(generated[1])
    rng = np.random.default_rng(seed)
    plans = np.array(["basic", "standard", "premium"], dtype=object)[np.digitize(x[:, 2], [-0.5, 0.5])]
    frame = pd.DataFrame({
        "tenure_months": np.round(np.clip(24 + 12 * x[:, 0], 0, None), 1),
        "monthly_charges": np.round(70 + 20 * x[:, 1], 2),
        "plan": pd.Series(plans, dtype="str"),
    })
    for column in ("tenure_months", "monthly_charges"):
        frame.loc[rng.random(rows) < 0.05, column] = np.nan
    return frame, pd.Series(np.where(y == 1, "yes", "no"), name="churned")


def churn_pipeline() -> Pipeline:
    """The most common tabular model: scale numbers (imputing gaps), one-hot the plan, logistic regression."""
    numeric = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
    columns = ColumnTransformer([
        ("numeric", numeric, ["tenure_months", "monthly_charges"]),
        ("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
    ])
    return Pipeline([("columns", columns), ("model", LogisticRegression(max_iter=500))])


def churn_classifier(out: Path, version: str = "1.0.0") -> Path:
    """The churn pipeline fitted on a DataFrame, saved with skops and served with pandas."""
    frame, churned = churn_frame()
    x_train, x_test, y_train, y_test = train_test_split(frame, churned, test_size=0.25, random_state=0)
    model = churn_pipeline().fit(x_train, y_train)
    return create_package(
        model,
        x_train,
        y_train,
        out_dir=out,
        name="churn-classifier",
        version=version,
        metrics={"test_accuracy": float(accuracy_score(y_test, model.predict(x_test)))},
        description="Customer churn from tenure, charges and plan (DataFrame pipeline)",
        overwrite=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    print(iris_classifier(args.out / "iris-classifier"))
    print(diabetes_regressor(args.out / "diabetes-regressor"))
    print(churn_classifier(args.out / "churn-classifier"))


if __name__ == "__main__":
    main()
