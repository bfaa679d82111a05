"""Library steps a pipeline calls: validate against the champion's schema, a seeded holdout, the
gate against the deployed champion on the same holdout rows, and packaging the candidate."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from model_packages.errors import KaizenError
from model_packages.retrain.gate import GateSpec, evaluate


class DataError(KaizenError):
    """The new training data does not fit the champion's schema."""


def validate_against_package(frame: Any, champion: Path, target: str) -> Any:
    """`frame` with exactly the champion's features (in its order) and `target`; values in range."""
    from model_packages.manifest import read_manifest

    manifest = read_manifest(champion)
    names = [spec.name for spec in manifest.inputs]
    missing = [n for n in [*names, target] if n not in frame.columns]
    if missing:
        raise DataError(f"the new data lacks column {missing[0]!r} (the champion {manifest.name} "
                        f"{manifest.version} needs {', '.join(names)} and the target {target!r})")
    for spec in manifest.inputs:
        column = frame[spec.name]
        if spec.dtype != "categorical":
            values = column.to_numpy(dtype=float, na_value=np.nan)
            if np.isnan(values).any() and not spec.allow_nan:
                raise DataError(f"column {spec.name!r}: row {int(np.isnan(values).argmax()) + 2} is empty")
            low = spec.minimum if spec.minimum is not None else -np.inf
            high = spec.maximum if spec.maximum is not None else np.inf
            bad = (values < low) | (values > high)
            if bad.any():
                row = int(bad.argmax())
                raise DataError(f"column {spec.name!r}: row {row + 2} value {values[row]} is outside "
                                f"[{spec.minimum}, {spec.maximum}]")
    return frame[[*names, target]]


def holdout_split(frame: Any, target: str, holdout: float, seed: int) -> tuple[Any, Any, Any, Any]:
    from sklearn.model_selection import train_test_split

    x = frame.drop(columns=[target])
    y = frame[target]
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=holdout, random_state=seed,
                                                        stratify=y if y.dtype == object else None)
    return x_train, y_train, x_test, y_test


def gate_against_champion(model: Any, split: tuple[Any, Any, Any, Any], champion: Path,
                          spec: GateSpec) -> dict[str, Any]:
    """Both models predict the same holdout rows; the champion through the runtime's own loader."""
    from model_packages.loading import load_model

    _, _, x_test, y_test = split
    loaded = load_model(champion)
    if loaded.manifest.model_input == "dataframe":  # rows as the runtime passes them; the
        matrix, challenger_input = x_test.to_numpy(dtype=object), x_test  # candidate sees the frame
    else:
        matrix = challenger_input = x_test.to_numpy(dtype=np.float64)
    kind = str if spec.metric == "accuracy" else float  # labels compare as text, regressions as numbers
    champion_predictions = np.asarray(loaded.predict(matrix)).reshape(len(matrix), -1)[:, 0].astype(kind)
    challenger_predictions = np.asarray(model.predict(challenger_input)).reshape(len(matrix), -1)[:, 0].astype(kind)
    result = evaluate(y_test.to_numpy().astype(kind), champion_predictions, challenger_predictions, spec)
    return {**asdict(result), "report": result.report()}


def next_patch(version: str) -> str:
    major, minor, patch = (int(p) for p in version.split(".")[:3])
    return f"{major}.{minor}.{patch + 1}"


def package_candidate(model: Any, split: tuple[Any, Any, Any, Any], gate: dict[str, Any], champion: Path,
                      work_dir: Path, parameters: dict[str, Any], version: str | None = None) -> Path:
    """The candidate as a model package, only if the gate passed: `version`, by default the next
    patch version of the champion (`kaizen retrain` passes a later one when the store already holds
    a different package under that number, e.g. one packaged and never deployed)."""
    from model_packages.manifest import read_manifest
    from model_packages.package import create_package

    if not gate["promote"]:
        raise KaizenError("the gate rejected the candidate: no package is produced")
    manifest = read_manifest(champion)
    version = version or next_patch(manifest.version)
    x_train, y_train, _, _ = split
    common: dict[str, Any] = {"out_dir": work_dir / f"{manifest.name}-{version}", "name": manifest.name,
                              "version": version, "metrics": {f"holdout_{gate['metric']}": float(gate["challenger"])},
                              "parameters": parameters, "description": manifest.description, "overwrite": True}
    if manifest.model_input == "dataframe":  # the schema (dtypes, categories, gaps) is read from the frame
        return create_package(model, x_train, y_train, **common)
    spec_ranges = {s.name: (s.minimum, s.maximum) for s in manifest.inputs
                   if s.minimum is not None and s.maximum is not None}
    return create_package(
        model, x_train.to_numpy(dtype=np.float64), y_train.to_numpy(), feature_names=[s.name for s in manifest.inputs],
        ranges={k: (float(a), float(b)) for k, (a, b) in spec_ranges.items() if a is not None and b is not None},
        **common,
    )
