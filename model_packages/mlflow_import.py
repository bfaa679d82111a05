"""Import an MLflow model directory (`MLmodel` + artifact) for `kaizen package --from-mlflow`.

Flavors: sklearn (skops; pickle/cloudpickle only with --trusted), xgboost (its own formats),
lightgbm (Booster text, or the scikit-learn class in skops with MLflow's LightGBM types) and onnx.
The model's signature gives the feature names and types; its input example is the warm-up row
(and the training data when no --data is given). MLflow itself is not needed: `MLmodel` is YAML.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from model_packages.errors import PackageError

FLAVORS = ("onnx", "xgboost", "lightgbm", "sklearn")
#: The types MLflow's lightgbm flavor writes into skops files of LGBMClassifier/LGBMRegressor.
_LIGHTGBM_SKOPS_TYPES = frozenset({
    "lightgbm.sklearn.LGBMClassifier", "lightgbm.sklearn.LGBMRegressor", "lightgbm.basic.Booster",
    "collections.OrderedDict",
})
_MLFLOW_TYPES = {"double": "float", "float": "float", "long": "integer", "integer": "integer",
                 "boolean": "boolean", "string": "categorical"}


@dataclass
class MlflowModel:
    """What Kaizen takes from an MLflow model directory."""

    model: Any
    flavor: str
    feature_names: list[str] | None = None
    feature_types: dict[str, str] = field(default_factory=dict)
    example: dict[str, np.ndarray] | np.ndarray | None = None
    trusted: bool = False


def _inside(directory: Path, name: str) -> Path:
    path = (directory / name).resolve()
    if directory.resolve() not in path.parents or not path.is_file() or (directory / name).is_symlink():
        raise PackageError(f"MLflow model file {name!r} is missing or outside {directory}")
    return path


def _signature(meta: dict[str, Any]) -> tuple[list[str] | None, dict[str, str]]:
    signature = meta.get("signature") or {}
    raw = signature.get("inputs")
    if not raw:
        return None, {}
    try:
        inputs = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError as error:
        raise PackageError(f"MLmodel signature.inputs is not JSON: {error}") from None
    if any(item.get("type") == "tensor" for item in inputs):
        return None, {}  # a tensor signature names no columns
    names = [str(item["name"]) for item in inputs]
    types = {str(item["name"]): _MLFLOW_TYPES.get(str(item.get("type")), "float") for item in inputs}
    return names, types


def _example(directory: Path, meta: dict[str, Any]) -> dict[str, np.ndarray] | np.ndarray | None:
    info = meta.get("saved_input_example_info") or {}
    name = info.get("artifact_path")
    if not name:
        return None
    data = json.loads(_inside(directory, name).read_text(encoding="utf-8"))
    if isinstance(data, dict) and "columns" in data and "data" in data:  # pandas split orient
        rows = data["data"]
        return {str(c): np.asarray([r[i] for r in rows]) for i, c in enumerate(data["columns"])}
    if isinstance(data, dict) and "inputs" in data:
        data = data["inputs"]
    return np.asarray(data)


def _load_sklearn(directory: Path, conf: dict[str, Any], trusted: bool) -> Any:
    from model_packages.loading import load_estimator

    name = str(conf.get("pickled_model") or "model.pkl")
    path = _inside(directory, name)
    fmt = conf.get("serialization_format", "cloudpickle")
    if fmt == "skops":
        return load_estimator(path, "skops", trusted)
    if not trusted:
        raise PackageError(f"the MLflow sklearn model is a {fmt} file ({name}): it can run arbitrary code when "
                           "loaded; pass --trusted only for a model you trust (Kaizen re-saves it as skops)")
    return load_estimator(path, "pickle", trusted=True)


def _load_lightgbm(directory: Path, conf: dict[str, Any]) -> Any:
    path = _inside(directory, str(conf.get("data") or "model.lgb"))
    if str(conf.get("model_class", "")).endswith("Booster") or path.suffix == ".lgb":
        import lightgbm

        try:
            return lightgbm.Booster(model_file=str(path))
        except Exception as error:  # LightGBM raises its own error for a corrupt text model
            raise PackageError(f"{path.name} is not a LightGBM text model: {error}") from None
    from model_packages.loading import import_skops_io
    from model_packages.skops_trust import is_trusted

    skops_io = import_skops_io()
    untrusted = skops_io.get_untrusted_types(file=path)
    unsafe = [t for t in untrusted if t not in _LIGHTGBM_SKOPS_TYPES and not is_trusted(t)]
    if unsafe:
        raise PackageError(f"{path.name} holds types outside LightGBM's and scikit-learn's: {', '.join(unsafe)}")
    return skops_io.load(path, trusted=list(untrusted))


def _load_xgboost(directory: Path, conf: dict[str, Any]) -> Any:
    import xgboost

    path = _inside(directory, str(conf.get("data") or "model.ubj"))
    model_class = str(conf.get("model_class", "xgboost.core.Booster"))
    classes = {"xgboost.sklearn.XGBClassifier": xgboost.XGBClassifier, "xgboost.sklearn.XGBRegressor":
               xgboost.XGBRegressor}
    model: Any = classes[model_class]() if model_class in classes else xgboost.Booster()
    try:
        model.load_model(str(path))
    except Exception as error:  # XGBoost raises its own error for a corrupt model
        raise PackageError(f"{path.name} is not an XGBoost model: {error}") from None
    return model


def read_mlflow_model(directory: str | Path, *, trusted: bool = False) -> MlflowModel:
    """Load the model of an MLflow model directory and what its MLmodel says about inputs."""
    root = Path(directory)
    mlmodel = root / "MLmodel"
    if not mlmodel.is_file():
        raise PackageError(f"{root} is not an MLflow model directory: MLmodel is missing")
    try:
        meta = yaml.safe_load(mlmodel.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise PackageError(f"{mlmodel} is not valid YAML: {error}") from None
    flavors = meta.get("flavors") or {}
    flavor = next((f for f in FLAVORS if f in flavors), None)
    if flavor is None:
        raise PackageError(f"MLflow model {root} has flavors {', '.join(sorted(flavors)) or 'none'}; Kaizen imports "
                           f"{', '.join(FLAVORS)}")
    conf = flavors[flavor] or {}
    if flavor == "onnx":
        model: Any = _inside(root, str(conf.get("data") or "model.onnx"))
    elif flavor == "xgboost":
        model = _load_xgboost(root, conf)
    elif flavor == "lightgbm":
        model = _load_lightgbm(root, conf)
    else:
        model = _load_sklearn(root, conf, trusted)
    names, types = _signature(meta)
    # --trusted vouches for the MLflow file; Kaizen's package is skops again, so it is trusted only
    # where it must be (a skops file with types outside the allow-list).
    pickled = flavor == "sklearn" and conf.get("serialization_format", "cloudpickle") != "skops"
    return MlflowModel(model=model, flavor=flavor, feature_names=names, feature_types=types,
                       example=_example(root, meta), trusted=trusted and not pickled)


def package_from_mlflow(directory: Path, *, data: Path | None, target: str | None, name: str, version: str,
                        out: Path, task: str | None = None, labels: str | None = None, trusted: bool = False,
                        overwrite: bool = False, log: Callable[[str], object] = print) -> Path:
    """`kaizen package --from-mlflow`: the MLflow model, its signature's columns in order, its input
    example as warm-up rows; training data from --data, else the input example itself."""
    from model_packages.cli import read_training_data
    from model_packages.package import create_package

    imported = read_mlflow_model(directory, trusted=trusted)
    y = None
    if data is not None:
        frame, y = read_training_data(data, target)
        columns: Any = {str(c): frame[c].to_numpy() for c in frame.columns}
    elif imported.example is not None:
        columns = imported.example
        log(f"no --data: the drift baseline comes from the {_rows(columns)} rows of the MLflow input example")
    else:
        raise PackageError(f"MLflow model {directory} has no input example: pass --data with training rows")
    names = imported.feature_names
    if isinstance(columns, dict) and names:
        missing = [n for n in names if n not in columns]
        if missing:
            raise PackageError(f"column {missing[0]!r} of the MLflow signature is not in the training data "
                               f"(columns: {', '.join(columns)})")
        columns = {n: columns[n] for n in names}
        for column, kind in imported.feature_types.items():
            if kind != "categorical" and np.asarray(columns[column]).dtype.kind not in "fiub":
                raise PackageError(f"column {column!r} is {kind} in the MLflow signature but holds text in the data")
    example = _example_rows(imported.example, names)
    fmt = "onnx" if imported.flavor == "onnx" else None
    return create_package(imported.model, columns, y, out_dir=out, name=name, version=version, artifact_format=fmt,
                          task=task, labels=[x.strip() for x in labels.split(",")] if labels else None,
                          trusted=imported.trusted, overwrite=overwrite,
                          input_example=example if imported.flavor != "onnx" or names else None,
                          description=f"imported from MLflow model {Path(directory).name} ({imported.flavor})")


def _rows(columns: Any) -> int:
    if isinstance(columns, dict):
        return len(next(iter(columns.values()))) if columns else 0
    return int(np.asarray(columns).shape[0])


def _example_rows(example: dict[str, np.ndarray] | np.ndarray | None,
                  names: list[str] | None) -> list[list[Any]] | None:
    if example is None:
        return None
    if isinstance(example, dict):
        order = names or list(example)
        matrix = [example[n].tolist() for n in order]
        return [list(row) for row in zip(*matrix, strict=True)]
    array = np.asarray(example)
    return array.tolist() if array.ndim == 2 else None
