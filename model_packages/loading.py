"""Load a model package into a predictor, refusing unsafe or inconsistent artifacts."""

from __future__ import annotations

import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from model_packages.errors import PackageError
from model_packages.manifest import FeatureSpec, Manifest, read_manifest
from model_packages.verify import verify_files


class LoadedModel(Protocol):
    """A model ready to predict on a 2-D array of rows in the manifest's input order."""

    manifest: Manifest

    def predict(self, rows: np.ndarray) -> np.ndarray: ...

    def predict_proba(self, rows: np.ndarray) -> np.ndarray | None: ...


class SklearnModel:
    """A scikit-learn estimator, configured for low per-call overhead."""

    def __init__(self, manifest: Manifest, estimator: Any) -> None:
        import sklearn

        # The runtime validates inputs itself: skip sklearn's per-call checks. Missing values
        # reach the model only for features the schema marks nullable (the model takes them).
        sklearn.set_config(assume_finite=True, skip_parameter_validation=True)
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        self.manifest = manifest
        self._estimator = estimator
        self._has_proba = hasattr(estimator, "predict_proba")
        self._check(estimator)
        self._input = frame_builder(manifest.inputs) if manifest.model_input == "dataframe" else np.asarray

    def _check(self, estimator: Any) -> None:
        manifest = self.manifest
        if not hasattr(estimator, "predict"):
            raise PackageError(f"artifact {manifest.artifact} holds {type(estimator).__name__}, which cannot predict")
        expected = getattr(estimator, "n_features_in_", None)
        if expected is not None and expected != len(manifest.inputs):
            raise PackageError(
                f"schema/artifact disagreement: the model takes {expected} features, "
                f"{manifest.artifact} manifest inputs list {len(manifest.inputs)}"
            )
        names = getattr(estimator, "feature_names_in_", None)
        if names is not None and list(names) != manifest.feature_names:
            raise PackageError(
                f"schema/artifact disagreement: the model was fitted on features {list(names)}, "
                f"the manifest lists {manifest.feature_names}"
            )
        classes = getattr(estimator, "classes_", None)
        if manifest.output.task == "classification" and classes is not None:
            labels = [c.item() if hasattr(c, "item") else c for c in classes]
            if [str(c) for c in labels] != [str(c) for c in manifest.output.labels or []]:
                raise PackageError(
                    f"schema/artifact disagreement: the model's classes {labels} differ from "
                    f"output.labels {manifest.output.labels}"
                )

    def predict(self, rows: np.ndarray) -> np.ndarray:
        _fast_sklearn_config()
        return np.asarray(self._estimator.predict(self._input(rows)))

    def predict_proba(self, rows: np.ndarray) -> np.ndarray | None:
        _fast_sklearn_config()
        return np.asarray(self._estimator.predict_proba(self._input(rows))) if self._has_proba else None


_THREAD = threading.local()


def _fast_sklearn_config() -> None:
    """scikit-learn's configuration is per thread: the server loads the model in a worker thread
    and predicts on the event loop, so the fast settings are applied in each predicting thread."""
    if not getattr(_THREAD, "configured", False):
        import sklearn

        sklearn.set_config(assume_finite=True, skip_parameter_validation=True)
        _THREAD.configured = True


def frame_builder(specs: Sequence[FeatureSpec]) -> Callable[[np.ndarray], Any]:
    """A function turning validated rows into the DataFrame the model was fitted on: the
    features as columns in order, with the training dtypes; string categoricals as str objects
    (missing values NaN), pandas `category` columns with the training categories."""
    import pandas as pd

    names = [s.name for s in specs]
    converters: list[Callable[[np.ndarray], Any]] = []
    for spec in specs:
        dtype = spec.pandas_dtype or ""
        if spec.dtype == "categorical" and not spec.numeric_categories:
            if dtype == "category":
                categories = [str(c) for c in spec.categories or []]
                converters.append(lambda c, cats=categories: pd.Categorical(c, categories=cats))
            else:
                converters.append(lambda c: c.astype(object, copy=False))
        elif dtype.startswith(("int", "uint", "Int", "UInt")) or dtype == "bool":
            # Whole numbers/booleans keep their dtype; with a missing value, they become float64,
            # as pandas itself makes them when reading data with gaps.
            target = np.dtype(dtype.lower())

            def convert(c: np.ndarray, target: np.dtype = target) -> np.ndarray:
                values = c.astype(np.float64, copy=False)
                return values if np.isnan(values).any() else values.astype(target)

            converters.append(convert)
        elif dtype == "float32":
            converters.append(lambda c: c.astype(np.float32))
        else:
            converters.append(lambda c: c.astype(np.float64, copy=False))

    def build(rows: np.ndarray) -> Any:
        return pd.DataFrame({name: convert(rows[:, j]) for j, (name, convert) in
                             enumerate(zip(names, converters, strict=True))}, columns=names)

    return build


#: What a missing string becomes in a compiled graph's string input: a value no encoder knows.
MISSING_STRING = ""


def column_feed(session: Any, names: Sequence[str]) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """A function turning validated rows (an object matrix in `names` order) into the feed of a
    graph with one `[N, 1]` input per column: strings for string inputs (missing ones
    MISSING_STRING), float64/float32/int64 numbers for the others."""
    from model_packages.serving.tensors import ORT_TO_NUMPY

    position = {name: j for j, name in enumerate(names)}
    parts: list[tuple[str, int, Any]] = []
    for graph_input in session.get_inputs():
        if graph_input.name not in position:
            raise PackageError(f"schema/artifact disagreement: the compiled graph takes input "
                               f"{graph_input.name!r}, which is not a manifest input ({', '.join(names)})")
        kind = None if graph_input.type == "tensor(string)" else ORT_TO_NUMPY.get(graph_input.type, np.float64)
        parts.append((graph_input.name, position[graph_input.name], kind))

    def feed(rows: np.ndarray) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for name, j, kind in parts:
            column = rows[:, j]
            if kind is None:
                values = np.array([v if isinstance(v, str) else MISSING_STRING for v in column.tolist()],
                                  dtype=object)
            else:
                values = column.astype(kind)
            out[name] = values.reshape(-1, 1)
        return out

    return feed


class OnnxModel:
    """An ONNX model run by onnxruntime on one thread (the server is the unit of parallelism)."""

    def __init__(self, manifest: Manifest, path: Path) -> None:
        import onnxruntime as ort

        from model_packages.onnx_check import refuse_external_data

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        # Load the very bytes that were checked: a self-contained model, nothing read beside it.
        data = path.read_bytes()
        refuse_external_data(data, path.name)
        try:
            self._session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own untyped errors for corrupt files
            raise PackageError(f"artifact {path.name} is not a loadable ONNX model: {error}") from None
        self.manifest = manifest
        inputs = self._session.get_inputs()
        serving = manifest.serving
        self._feed: Callable[[np.ndarray], dict[str, np.ndarray]] | None = None
        if serving is not None and serving.inputs == "columns" and path.name == serving.artifact:
            if sorted(i.name for i in inputs) != sorted(manifest.feature_names):
                raise PackageError(f"schema/artifact disagreement: {path.name} takes inputs "
                                   f"{[i.name for i in inputs]}, the manifest lists {manifest.feature_names}")
            self._feed = column_feed(self._session, manifest.feature_names)
        elif len(inputs) != 1:
            raise PackageError(f"ONNX model {path.name} must take one input tensor, it takes {len(inputs)}")
        self._input = inputs[0].name
        from model_packages.serving.tensors import ORT_TO_NUMPY

        self._dtype = ORT_TO_NUMPY.get(inputs[0].type, np.float64)
        width = inputs[0].shape[-1] if inputs[0].shape else None
        matrix_input = self._feed is None and manifest.tensor_input is None
        if matrix_input and isinstance(width, int) and width != len(manifest.inputs):
            raise PackageError(
                f"schema/artifact disagreement: the ONNX input takes {width} features, "
                f"the manifest lists {len(manifest.inputs)}"
            )
        outputs = [o.name for o in self._session.get_outputs()]
        self._label = outputs[0]
        self._proba = outputs[1] if len(outputs) > 1 and manifest.output.task == "classification" else None
        # Booster graphs answer with class indices: map them to output.labels.
        self._labels = (np.asarray(manifest.output.labels, dtype=object)
                        if serving is not None and serving.label_index and path.name == serving.artifact else None)
        # A classifier with one [N, K] output (a network ending in Softmax): K probabilities.
        first = self._session.get_outputs()[0].shape
        self._scores_only = (manifest.output.task == "classification" and len(outputs) == 1
                             and len(first) == 2)
        if self._scores_only:
            self._proba = outputs[0]
            self._labels = np.asarray(manifest.output.labels, dtype=object)

    def _run(self, names: list[str], rows: np.ndarray) -> list[Any]:
        if self._feed is not None:
            return list(self._session.run(names, self._feed(rows)))
        return list(self._session.run(names, {self._input: rows.astype(self._dtype, copy=False)}))

    def predict(self, rows: np.ndarray) -> np.ndarray:
        result = np.asarray(self._run([self._label], rows)[0])
        if self._scores_only and self._labels is not None:
            return self._labels[np.argmax(result, axis=1)]
        if self.manifest.output.task == "regression" and self.manifest.tensor_input is not None:
            return result
        if self.manifest.output.task == "regression":
            return result.reshape(result.shape[0], -1)[:, 0] if result.ndim > 1 else result
        if self._labels is not None:
            return self._labels[result.reshape(-1).astype(np.intp)]
        return result

    def predict_proba(self, rows: np.ndarray) -> np.ndarray | None:
        if self._proba is None:
            return None
        return np.asarray(self._run([self._proba], rows)[0])


#: Objectives whose predictions are probabilities (classifiers) or values (regressors).
_XGB_CLASSIFIERS = ("binary:logistic", "multi:softprob")
_LGB_CLASSIFIERS = ("binary", "multiclass", "multiclassova")


def booster_objective(booster: Any, framework: str) -> tuple[str, int]:
    """(objective, number of classes; 0 for a regressor) of a native XGBoost/LightGBM Booster.
    Raises PackageError for classifiers whose predictions are not probabilities."""
    import json

    if framework == "xgboost":
        learner = json.loads(booster.save_config())["learner"]
        objective = str(learner["objective"]["name"])
        classes = int(learner["learner_model_param"].get("num_class", "0") or 0)
        if objective.startswith(("binary:", "multi:")) and objective not in _XGB_CLASSIFIERS:
            raise PackageError(f"XGBoost objective {objective!r} does not predict probabilities: "
                               f"train with {' or '.join(_XGB_CLASSIFIERS)}")
        if objective == "binary:logistic":
            classes = 2
        return objective, classes if objective in _XGB_CLASSIFIERS else 0
    header = booster.model_to_string(num_iteration=0).split("\ntree_sizes", 1)[0]
    fields = dict(line.split("=", 1) for line in header.splitlines() if "=" in line)
    objective = fields.get("objective", "").split(" ", 1)[0]
    if objective in ("cross_entropy", "xentropy", "lambdarank", "rank_xendcg", "cross_entropy_lambda"):
        raise PackageError(f"LightGBM objective {objective!r} is not a classifier or regressor Kaizen serves")
    if objective not in _LGB_CLASSIFIERS:
        return objective, 0
    return objective, max(int(fields.get("num_class", "1")), 2)


def load_booster(path: Path) -> Any:
    """A native Booster from an XGBoost (.ubj/.json) or LightGBM (.txt) model file."""
    try:
        if path.suffix.lower() == ".txt":
            import lightgbm

            return lightgbm.Booster(model_file=str(path))
        import xgboost

        booster = xgboost.Booster()
        booster.load_model(str(path))
        return booster
    except Exception as error:  # the frameworks raise their own errors for corrupt files
        raise PackageError(f"{path.name} is not a loadable XGBoost/LightGBM model: {error}") from None


class BoosterModel:
    """An XGBoost or LightGBM Booster loaded from its own model format, on one thread.
    Classifiers map probabilities to output.labels (the booster knows only class indices)."""

    def __init__(self, manifest: Manifest, path: Path) -> None:
        self.manifest = manifest
        framework = manifest.framework
        try:
            if framework == "xgboost":
                import xgboost

                booster: Any = xgboost.Booster()
                booster.load_model(str(path))
                booster.set_param({"nthread": 1})
                width = booster.num_features()
            else:
                import lightgbm

                booster = lightgbm.Booster(model_file=str(path))
                width = booster.num_feature()
        except PackageError:
            raise
        except Exception as error:  # the frameworks raise their own errors for corrupt files
            raise PackageError(f"artifact {path.name} is not a loadable {framework} model: "
                               f"{str(error).strip().splitlines()[-1] if str(error).strip() else error}") from None
        self.booster = booster
        self._xgb = framework == "xgboost"
        _, classes = booster_objective(booster, framework)
        if width != len(manifest.inputs):
            raise PackageError(f"schema/artifact disagreement: the model takes {width} features, "
                               f"the manifest lists {len(manifest.inputs)}")
        labels = manifest.output.labels or []
        if manifest.output.task == "classification" and classes != len(labels):
            raise PackageError(f"schema/artifact disagreement: the model has {classes} classes, "
                               f"output.labels lists {len(labels)}")
        if manifest.output.task == "regression" and classes:
            raise PackageError("schema/artifact disagreement: the model is a classifier, the manifest says regression")
        self._labels = np.asarray(labels, dtype=object)

    def _raw(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.float64)
        if self._xgb:
            return np.asarray(self.booster.inplace_predict(rows))
        return np.asarray(self.booster.predict(rows, num_threads=1))

    def predict_proba(self, rows: np.ndarray) -> np.ndarray | None:
        if self.manifest.output.task != "classification":
            return None
        raw = self._raw(rows)
        return np.column_stack([1.0 - raw, raw]) if raw.ndim == 1 else raw

    def predict(self, rows: np.ndarray) -> np.ndarray:
        proba = self.predict_proba(rows)
        if proba is None:
            return self._raw(rows).reshape(-1)
        return self._labels[np.argmax(proba, axis=1)]


def import_skops_io() -> Any:
    """Import skops.io without its default allow-list, which imports every scikit-learn module
    (about 0.45 s of start-up). Kaizen's own allow-list (`skops_trust`) names estimators instead."""
    if "skops.io" in sys.modules:
        return sys.modules["skops.io"]
    import sklearn.utils

    original = sklearn.utils.all_estimators
    sklearn.utils.all_estimators = lambda *args, **kwargs: []  # type: ignore[assignment]
    try:
        import skops.io
    finally:
        sklearn.utils.all_estimators = original
    return skops.io


def _load_skops(path: Path, trusted: bool) -> Any:
    """Load a skops file. Untrusted files may hold only the types `skops_trust` allows, checked by
    name before anything is imported or constructed."""
    from model_packages import skops_trust

    skops_io = import_skops_io()
    try:
        untrusted = skops_io.get_untrusted_types(file=path)
    except Exception as error:  # corrupt zip or schema
        raise PackageError(f"artifact {path.name} is not a readable skops file: {error}") from None
    unsafe = [t for t in untrusted if not skops_trust.is_trusted(t)]
    if unsafe and not trusted:
        raise PackageError(
            f"artifact {path.name} contains types outside Kaizen's skops allow-list (scikit-learn "
            f"estimators and reviewed helpers): {', '.join(unsafe)}; set `trusted: true` in kaizen.yaml "
            "only if you trust its origin"
        )
    try:
        model = skops_io.load(path, trusted=list(untrusted))
    except Exception as error:
        raise PackageError(f"artifact {path.name} could not be loaded by skops: {error}") from None
    problem = None if trusted else skops_trust.check_loaded(model)
    if problem:
        raise PackageError(f"artifact {path.name} is malformed: {problem}")
    return model


def _load_pickle(path: Path, fmt: str) -> Any:
    try:
        if fmt == "joblib":
            import joblib

            return joblib.load(path)
        import pickle

        with open(path, "rb") as handle:
            return pickle.load(handle)
    except Exception as error:
        raise PackageError(f"artifact {path.name} could not be unpickled: {error}") from None


def load_estimator(path: Path, fmt: str, trusted: bool) -> Any:
    """Load a scikit-learn artifact file (skops, or pickle/joblib only when `trusted`)."""
    if fmt in ("pickle", "joblib"):
        if not trusted:
            raise PackageError(f"refusing to load {path.name}: {fmt} can run arbitrary code; "
                               "use skops or ONNX, or trust the file explicitly")
        return _load_pickle(path, fmt)
    return _load_skops(path, trusted)


SERVE_WITH = ("compiled", "source")


def load_model(package_dir: str | Path, *, verify: bool = True, serve_with: str | None = None) -> LoadedModel:
    """Load a package's model. Pickle formats load only when the manifest says `trusted: true`.

    A package with a compiled serving artifact is served from it (no scikit-learn import) unless
    `serve_with="source"` asks for the source artifact (None: "compiled"). The runtime's settings
    pass it down (`serving/settings.py` reads KAIZEN_SERVE_WITH); nothing here reads the environment."""
    directory = Path(package_dir)
    manifest = verify_files(directory) if verify else read_manifest(directory)
    choice = serve_with or "compiled"
    if choice not in SERVE_WITH:
        raise PackageError(f"serve_with={choice!r}: use compiled or source")
    if manifest.serving is not None and choice == "compiled":
        return OnnxModel(manifest, directory / manifest.serving.artifact)
    path = directory / manifest.artifact
    if manifest.format == "onnx":
        return OnnxModel(manifest, path)
    if manifest.framework in ("xgboost", "lightgbm"):
        return BoosterModel(manifest, path)
    if manifest.format in ("pickle", "joblib"):
        if not manifest.trusted:
            raise PackageError(
                f"refusing to load {manifest.artifact}: {manifest.format} can run arbitrary code; "
                "use skops or ONNX, or set `trusted: true` in kaizen.yaml for a model you trust"
            )
        return SklearnModel(manifest, _load_pickle(path, manifest.format))
    return SklearnModel(manifest, _load_skops(path, manifest.trusted))
