"""Create, verify and describe model packages (a directory with `kaizen.yaml` and one artifact)."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from model_packages import __version__
from model_packages.baseline import compute_baseline, prediction_baseline
from model_packages.compile import Compiled, compile_for_serving, sklearn_to_onnx
from model_packages.errors import PackageError
from model_packages.manifest import (
    FRAMEWORK_FORMATS,
    UNSAFE_FORMATS,
    Compilation,
    FeatureSpec,
    Lineage,
    Manifest,
    OutputSpec,
    Scalar,
    ServingArtifact,
    TensorSpec,
    write_manifest,
)
from model_packages.reproducible import code_revision as reproducible_revision
from model_packages.reproducible import deterministic_skops, source_date
from model_packages.serving.tensors import check_sample, tensor_data_hash, tensor_spec_from_onnx
from model_packages.verify import sha256_file, verify_files

__all__ = ["copy_without_serving_artifact", "create_package", "describe_package", "sha256_file",
           "sklearn_to_onnx", "verify_package"]

ARTIFACT_NAMES = {"skops": "model.skops", "onnx": "model.onnx", "pickle": "model.pkl", "joblib": "model.joblib",
                  "ubj": "model.ubj", "json": "model.json", "txt": "model.txt"}
#: The default artifact format of each framework: its own format, never pickle.
DEFAULT_FORMATS = {"sklearn": "skops", "onnx": "onnx", "xgboost": "ubj", "lightgbm": "txt"}


def _is_frame(x: Any) -> bool:
    return hasattr(x, "columns") and hasattr(x, "dtypes") and hasattr(x, "to_numpy")


def _columns(x: Any, feature_names: Sequence[str] | None) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Split training data (DataFrame, mapping of columns, 2-D array or rows) into named columns,
    with the pandas dtype of each column when it came from a DataFrame."""
    if isinstance(x, Mapping):
        return {str(name): np.asarray(column) for name, column in x.items()}, {}
    if _is_frame(x):
        names = [str(c) for c in x.columns]
        if len(set(names)) != len(names):
            raise PackageError(f"training data has duplicate column names: {names}")
        columns = {name: x[col].to_numpy() for name, col in zip(names, x.columns, strict=True)}
        return columns, {name: str(x[col].dtype) for name, col in zip(names, x.columns, strict=True)}
    array = np.asarray(x)
    if array.ndim != 2:
        raise PackageError(f"training data must be 2-D (rows x features), got shape {array.shape}")
    names = list(feature_names) if feature_names else [f"f{i}" for i in range(array.shape[1])]
    if len(names) != array.shape[1]:
        raise PackageError(f"{len(names)} feature names given for {array.shape[1]} columns of training data")
    return {name: array[:, i] for i, name in enumerate(names)}, {}


def _align(model: Any, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Check the data's columns against what the model was fitted on; order them like the model.

    Raises one PackageError naming the first column the model and the data disagree on."""
    fitted = getattr(model, "feature_names_in_", None)
    if fitted is not None:
        names = [str(n) for n in fitted]
        missing = [n for n in names if n not in columns]
        if missing:
            raise PackageError(f"the model was fitted on column {missing[0]!r}, which the training data lacks "
                               f"(data columns: {', '.join(columns)})")
        extra = [n for n in columns if n not in names]
        if extra:
            raise PackageError(f"column {extra[0]!r} is in the training data but the model was not fitted on it; "
                               f"drop it (kaizen package --drop {extra[0]}) or name it as the --target")
        return {n: columns[n] for n in names}
    width = getattr(model, "n_features_in_", None)
    if isinstance(width, int) and width != len(columns):
        raise PackageError(f"the model takes {width} features but the training data has {len(columns)} columns "
                           f"({', '.join(columns)})")
    return columns


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _infer_feature(name: str, column: np.ndarray, ranges: Mapping[str, tuple[float, float]],
                   pandas_dtype: str | None = None) -> FeatureSpec:
    low, high = ranges.get(name, (None, None))
    if column.dtype.kind == "b":
        return FeatureSpec(name=name, dtype="boolean", pandas_dtype=pandas_dtype)
    if column.dtype.kind in "iu":
        return FeatureSpec(name=name, dtype="integer", minimum=low, maximum=high, pandas_dtype=pandas_dtype)
    if column.dtype.kind == "f":
        gaps = bool(np.isnan(column).any())
        return FeatureSpec(name=name, dtype="float", minimum=low, maximum=high, allow_nan=gaps, nullable=gaps,
                           pandas_dtype=pandas_dtype)
    present = [v for v in column.tolist() if not _missing(v)]
    if not present:
        raise PackageError(f"column {name!r} has no values in the training data")
    categories: list[Scalar] = sorted({str(v) for v in present})
    return FeatureSpec(name=name, dtype="categorical", categories=categories,
                       nullable=len(present) < len(column), pandas_dtype=pandas_dtype)


def _model_rows(columns: Mapping[str, np.ndarray], specs: Sequence[FeatureSpec]) -> np.ndarray:
    """Training data as the runtime's validated matrix: floats, or objects when a column holds strings."""
    strings = any(s.dtype == "categorical" and not s.numeric_categories for s in specs)
    if not strings:
        return np.column_stack([np.asarray(columns[s.name], dtype=np.float64) for s in specs])
    rows = np.empty((len(columns[specs[0].name]), len(specs)), dtype=object)
    for j, spec in enumerate(specs):
        column = columns[spec.name]
        if spec.dtype == "categorical" and not spec.numeric_categories:
            rows[:, j] = [np.nan if _missing(v) else str(v) for v in column.tolist()]
        else:
            rows[:, j] = np.asarray(column, dtype=np.float64)
    return rows


def _diagnose(model: Any, frame: Any) -> str:
    """Name the columns whose transformer fails, for a pipeline starting with a ColumnTransformer."""
    steps = getattr(model, "steps", None)
    first = steps[0][1] if steps else model
    if frame is None or not _is_frame(frame) or not hasattr(first, "transformers_"):
        return ""
    for name, transformer, cols in first.transformers_:
        if transformer in ("drop", "passthrough") or not isinstance(cols, list) or not cols:
            continue
        try:
            transformer.transform(frame[cols])
        except Exception:  # this transformer is the one that disagrees with the data
            return f" (column {', '.join(map(repr, cols))}, transformer {name!r} {type(transformer).__name__})"
    return ""


#: A category no training data has, used to probe whether the model accepts unseen categories.
_PROBE_CATEGORY = "__kaizen_unseen_probe__"


def _probe(model: Any, rows: np.ndarray, specs: list[FeatureSpec], to_input: Any) -> list[FeatureSpec]:
    """Ask the model itself which features may be missing or hold unseen categories: change one
    value of a training row and see whether it still predicts a finite answer."""
    import warnings

    import sklearn

    def accepts(row: np.ndarray) -> bool:
        try:
            with sklearn.config_context(assume_finite=False), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = np.asarray(model.predict(to_input(row)))
        except Exception:  # the model refuses the value: the schema will too
            return False
        return out.dtype.kind not in "fc" or bool(np.isfinite(out).all())

    probed: list[FeatureSpec] = []
    for j, spec in enumerate(specs):
        update: dict[str, Any] = {}
        string = spec.dtype == "categorical" and not spec.numeric_categories
        row = rows[:1].copy()
        if not spec.nullable:
            row[0, j] = np.nan
            if accepts(row):
                update["nullable"] = True
                if not string:
                    update["allow_nan"] = True
        if string and not spec.allow_unknown:
            row[0, j] = _PROBE_CATEGORY
            update["allow_unknown"] = accepts(row)
        probed.append(spec.model_copy(update=update) if update else spec)
    return probed


def _data_hash(columns: Mapping[str, np.ndarray], y: Any) -> str:
    digest = hashlib.sha256()
    for name, column in columns.items():
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(column).astype(str).tobytes() if column.dtype.kind == "O"
                      else np.ascontiguousarray(column).tobytes())
    if y is not None:  # values, never an object array's bytes (those are memory addresses)
        target = np.asarray(y)
        digest.update(target.astype(str).tobytes() if target.dtype.kind == "O"
                      else np.ascontiguousarray(target).tobytes())
    return digest.hexdigest()


def _simple_params(model: Any) -> dict[str, str | int | float | bool | None]:
    if not hasattr(model, "get_params"):
        return {}
    params: dict[str, str | int | float | bool | None] = {}
    for key, value in sorted(model.get_params(deep=True).items()):
        if value is None or isinstance(value, str | int | float | bool):
            params[key] = value
    return params


def framework_of(model: Any) -> str:
    """The framework a fitted model belongs to: xgboost, lightgbm (sklearn API or Booster),
    onnx (a path, bytes or ModelProto) or sklearn (anything else)."""
    if isinstance(model, bytes | str | os.PathLike) or type(model).__name__ == "ModelProto":
        return "onnx"
    root = type(model).__module__.split(".", 1)[0]
    return root if root in ("xgboost", "lightgbm") else "sklearn"


def _booster_task(model: Any, framework: str) -> tuple[str | None, int]:
    """(task, classes) from a native Booster's objective; (None, 0) for other models."""
    from model_packages.loading import booster_objective

    if framework not in ("xgboost", "lightgbm") or hasattr(model, "classes_") or hasattr(model, "get_params"):
        return None, 0
    _, classes = booster_objective(model, framework)
    return ("classification" if classes else "regression"), classes


def _write_artifact(model: Any, fmt: str, path: Path) -> None:
    if fmt in ("ubj", "json"):  # XGBoost: sklearn API and Booster both save their own format
        model.save_model(str(path))
    elif fmt == "txt":  # LightGBM's text model
        booster = model.booster_ if hasattr(model, "booster_") else model
        booster.save_model(str(path))
    elif fmt == "skops":
        import skops.io

        skops.io.dump(model, path)
        deterministic_skops(path)
    elif fmt == "onnx":
        if isinstance(model, str | os.PathLike):
            shutil.copyfile(model, path)
        elif isinstance(model, bytes):
            path.write_bytes(model)
        elif hasattr(model, "SerializeToString"):
            path.write_bytes(model.SerializeToString())
        else:
            raise PackageError("an ONNX package needs an ONNX file path, bytes or ModelProto")
    elif fmt == "joblib":
        import joblib

        joblib.dump(model, path)
    else:
        import pickle

        with open(path, "wb") as handle:
            pickle.dump(model, handle)


def _tensor_input(model: Any) -> TensorSpec | None:
    """The tensor input of a deep-learning ONNX model; None for a tabular one."""
    try:
        return tensor_spec_from_onnx(model)
    except PackageError:
        raise
    except Exception as error:  # onnx raises DecodeError and friends for files that are not ONNX
        raise PackageError(f"the ONNX model cannot be read: {error}") from None


def _check_rows(rows: np.ndarray, specs: Sequence[FeatureSpec], per_case: int = 100) -> np.ndarray:
    """The training rows, plus for each string categorical that accepts unseen categories
    `per_case` rows holding one, and for each nullable feature `per_case` rows missing it: the
    values a compiled graph must answer like the model, beyond what training saw."""
    base = rows[:per_case]
    extra = [rows]
    for j, spec in enumerate(specs):
        string = spec.dtype == "categorical" and not spec.numeric_categories
        if string and spec.allow_unknown:
            changed = base.copy()
            changed[:, j] = _PROBE_CATEGORY
            extra.append(changed)
        if spec.nullable or spec.allow_nan:
            changed = base.copy()
            changed[:, j] = np.nan
            extra.append(changed)
    return np.concatenate(extra)


def _compile_frame(model: Any, columns: Mapping[str, np.ndarray], task: str, manifest: Manifest) -> Compiled:
    """A DataFrame pipeline with string columns: a graph with one input per column, checked
    against the pipeline's own answers on the training rows, unseen categories and gaps."""
    from model_packages.loading import frame_builder

    rows = _check_rows(_model_rows(columns, manifest.inputs), manifest.inputs)
    fitted: Any = model
    try:
        frame = frame_builder(manifest.inputs)(rows)
        proba = fitted.predict_proba(frame) if task == "classification" and hasattr(fitted, "predict_proba") else None
        reference = (fitted.predict(frame), proba)
    except Exception as error:  # the model's own predict fails on the check rows
        return Compiled(None, f"{type(model).__name__}.predict failed on the check rows: "
                              f"{type(error).__name__}: {error}")
    return compile_for_serving(model, rows, task, "sklearn", reference, specs=manifest.inputs)


def _compile(model: Any, columns: Mapping[str, np.ndarray], task: str, manifest: Manifest,
             artifact: Path, reference_input: Any = None) -> Compiled:
    """Compile for serving; the reason when there is no compiled artifact. Numeric data gives a
    graph with one float tensor; a DataFrame pipeline with string columns one input per column.
    XGBoost/LightGBM: the Booster the runtime would load from `artifact` is compiled and is the
    reference (labels as indices into output.labels)."""
    text = [name for name, c in columns.items() if np.asarray(c).dtype.kind not in "fiub"]
    if text and manifest.framework == "sklearn" and manifest.model_input == "dataframe":
        return _compile_frame(model, columns, task, manifest)
    if text:
        return Compiled(None, f"column {text[0]!r} is not numeric and the model was not fitted on a DataFrame "
                              "(the compiled graph takes one float tensor); the source framework serves the model")
    matrix = np.column_stack([np.asarray(c, dtype=np.float64) for c in columns.values()])
    framework = manifest.framework
    if framework in ("xgboost", "lightgbm"):
        from model_packages.loading import BoosterModel

        source = BoosterModel(manifest, artifact)
        proba = source.predict_proba(matrix)
        reference = (np.argmax(proba, axis=1), proba) if proba is not None else (source.predict(matrix), None)
        return compile_for_serving(source.booster, matrix, task, framework, reference)
    fitted: Any = model
    try:
        sample_input = matrix if reference_input is None else reference_input
        if task == "classification":
            proba = fitted.predict_proba(sample_input) if hasattr(fitted, "predict_proba") else None
            reference = (fitted.predict(sample_input), proba)
        else:
            reference = (fitted.predict(sample_input), None)
    except Exception as error:  # the model's own predict fails on the training data
        return Compiled(None, f"{type(model).__name__}.predict failed on the training "
                              f"data: {error}")
    return compile_for_serving(model, matrix, task, framework, reference)


def _mark_sensitive(specs: list[FeatureSpec], names: Sequence[str]) -> list[FeatureSpec]:
    """Mark the named features `sensitive: true` (never captured, never echoed in errors or logs)."""
    known = {s.name for s in specs}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise PackageError(f"sensitive feature {unknown[0]!r} is not an input (inputs: {', '.join(sorted(known))})")
    wanted = set(names)
    return [s.model_copy(update={"sensitive": True}) if s.name in wanted else s for s in specs]


def create_package(
    model: Any,
    x: Any,
    y: Any = None,
    *,
    out_dir: str | Path,
    name: str,
    version: str,
    feature_names: Sequence[str] | None = None,
    features: Sequence[FeatureSpec] | None = None,
    ranges: Mapping[str, tuple[float, float]] | None = None,
    artifact_format: str | None = None,
    task: str | None = None,
    labels: Sequence[Scalar] | None = None,
    metrics: Mapping[str, float] | None = None,
    parameters: Mapping[str, str | int | float | bool | None] | None = None,
    code_revision: str | None = None,
    description: str | None = None,
    trusted: bool = False,
    compile_onnx: bool = True,
    overwrite: bool = False,
    input_example: Sequence[Sequence[Scalar | bool | None]] | None = None,
    sensitive: Sequence[str] | None = None,
) -> Path:
    """Build a model package from a fitted estimator (or ONNX model) and its training data.

    The package is written to a temporary directory and moved into place only when complete,
    then verified, so a failure never leaves a half-written package behind. With `compile_onnx`,
    a scikit-learn model also gets a double-precision ONNX serving artifact when its predictions
    match on every training row (faster, and the image needs no scikit-learn).
    """
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise PackageError(f"{out} already exists (pass overwrite=True to replace it)")
    from model_packages.catboost_export import catboost_to_onnx, check_exportable, is_catboost, is_classifier

    if is_catboost(model):  # CatBoost's own ONNX export, checked on the training rows
        booster: Any = model
        check_exportable(booster)
        columns_in, _ = _columns(x, feature_names)
        onnx_bytes, _ = catboost_to_onnx(booster, np.column_stack(list(columns_in.values())).astype(np.float64))
        if labels is None and is_classifier(booster):
            labels = [c.item() if hasattr(c, "item") else c for c in booster.classes_]
        task = task or ("classification" if labels is not None else "regression")
        parameters = parameters if parameters is not None else {
            "catboost." + k: v for k, v in _simple_params(booster).items()}
        description = description or f"{type(booster).__name__} exported with CatBoost's save_model(format='onnx')"
        if metrics is None and y is not None:
            key = "training_accuracy" if task == "classification" else "training_r2"
            metrics = {key: float(booster.score(x, y))}
        model, artifact_format = onnx_bytes, "onnx"
        feature_names = list(columns_in)
        x = np.column_stack(list(columns_in.values())).astype(np.float64)
    framework = framework_of(model) if artifact_format != "onnx" else "onnx"
    fmt = artifact_format or DEFAULT_FORMATS[framework]
    if fmt not in ARTIFACT_NAMES:
        raise PackageError(f"unknown artifact format {fmt!r}; use one of {', '.join(ARTIFACT_NAMES)}")
    if fmt not in FRAMEWORK_FORMATS[framework]:
        raise PackageError(f"format {fmt!r} does not belong to framework {framework!r}: use "
                           f"{' or '.join(sorted(FRAMEWORK_FORMATS[framework]))}")
    if fmt in UNSAFE_FORMATS and not trusted:
        raise PackageError(f"format {fmt!r} loads with pickle: pass trusted=True only for a model you trust")
    tensor = _tensor_input(model) if fmt == "onnx" else None
    sample = check_sample(tensor, x) if tensor is not None else None
    columns, dtypes = _columns(x, feature_names) if tensor is None else ({}, {})
    # scikit-learn estimators get the DataFrame treatment; XGBoost/LightGBM and ONNX take arrays.
    is_estimator = framework == "sklearn"
    if is_estimator:
        columns = _align(model, columns)
    model_input = "dataframe" if is_estimator and hasattr(model, "feature_names_in_") else "array"
    if model_input == "dataframe" and not dtypes:
        dtypes = {n: "object" if c.dtype.kind in "OUS" else str(c.dtype) for n, c in columns.items()}
    if features:
        specs = [s if s.pandas_dtype or s.name not in dtypes else s.model_copy(update={"pandas_dtype": dtypes[s.name]})
                 for s in features]
    else:
        specs = [_infer_feature(n, c, ranges or {}, dtypes.get(n)) for n, c in columns.items()]
    if model_input == "array":
        specs = [s.model_copy(update={"pandas_dtype": None}) for s in specs]
    if [s.name for s in specs] != list(columns):
        raise PackageError("feature specs must name the training data's columns in order")
    specs = _mark_sensitive(specs, sensitive or ())
    train_input: Any = None
    if is_estimator:
        from model_packages.loading import frame_builder

        rows = _model_rows(columns, specs)
        to_input = frame_builder(specs) if model_input == "dataframe" else (lambda r: r)
        estimator: Any = model
        try:
            train_input = to_input(rows)
            np.asarray(estimator.predict(train_input[:1] if model_input == "array" else train_input.iloc[:1]))
        except Exception as error:  # the model and the data disagree: name it once
            where = _diagnose(estimator, train_input)
            raise PackageError(f"the model cannot predict on the training data as Kaizen will serve it"
                               f"{where}: {type(error).__name__}: {error}") from None
        if not features:
            specs = _probe(estimator, rows, specs, to_input)
    booster_task, booster_classes = _booster_task(model, framework)
    if task is None:
        task = booster_task or ("classification" if hasattr(model, "classes_") or labels else "regression")
    if task == "classification" and labels is None and booster_classes:
        labels = list(range(booster_classes))
    if task == "classification" and labels is None:
        if not hasattr(model, "classes_"):
            raise PackageError("classification packages need `labels` when the model has no classes_")
        fitted: Any = model
        labels = [c.item() if hasattr(c, "item") else c for c in fitted.classes_]
    output = OutputSpec(
        task=task,  # type: ignore[arg-type]
        labels=list(labels) if task == "classification" and labels is not None else None,
        probabilities=task == "classification"
        and (fmt == "onnx" or framework != "sklearn" or hasattr(model, "predict_proba")),
    )
    if metrics is None and y is not None and hasattr(model, "score") and columns:
        key = "training_accuracy" if task == "classification" else "training_r2"
        scorer: Any = model
        scoring = train_input if train_input is not None else np.column_stack(list(columns.values()))
        metrics = {key: float(scorer.score(scoring, y))}
    baseline = compute_baseline(columns, specs, dict(metrics or {}))
    if sample is not None:
        baseline = baseline.model_copy(update={"rows": int(sample.shape[0])})

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    staging.chmod(0o755)
    try:
        artifact = staging / ARTIFACT_NAMES[fmt]
        _write_artifact(model, fmt, artifact)
        manifest = Manifest(
            name=name,
            version=version,
            description=description,
            framework=framework,  # type: ignore[arg-type]
            format=fmt,  # type: ignore[arg-type]
            artifact=artifact.name,
            artifact_sha256=sha256_file(artifact),
            trusted=trusted,
            model_input=model_input,  # type: ignore[arg-type]
            inputs=specs,
            tensor_input=tensor,
            input_example=[list(r) for r in input_example] if input_example else None,
            output=output,
            baseline=baseline,
            lineage=Lineage(
                data_sha256=_data_hash(columns, y) if sample is None else tensor_data_hash(sample),
                code_revision=code_revision or reproducible_revision(),
                parameters=dict(parameters) if parameters is not None else _simple_params(model),
                created_at=source_date(),
                kaizen_version=__version__,
            ),
        )
        if compile_onnx and fmt != "onnx":
            compiled = _compile(model, columns, task, manifest, artifact, train_input)
            manifest = manifest.model_copy(update={"compilation": Compilation(
                compiled=compiled.onnx is not None, compiler=compiled.compiler, reason=compiled.reason)})
            if compiled.onnx is not None:
                serving_path = staging / "serving.onnx"
                serving_path.write_bytes(compiled.onnx)
                manifest = manifest.model_copy(update={"serving": ServingArtifact(
                    artifact=serving_path.name, artifact_sha256=sha256_file(serving_path),
                    parity_rows=compiled.parity_rows or len(next(iter(columns.values()))),
                    max_abs_diff=compiled.max_abs_diff, label_index=compiled.label_index,
                    inputs="columns" if compiled.column_inputs else "matrix")})
        write_manifest(manifest, staging)
        manifest = _with_prediction_baseline(manifest, staging, columns)
        verify_package(staging, load=True)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


PREDICTION_BASELINE_ROWS = 100_000  # at most this many training rows (an even sample) are predicted


def _with_prediction_baseline(manifest: Manifest, staging: Path, columns: Mapping[str, np.ndarray]) -> Manifest:
    """Predict the training rows with the packaged model, as the runtime will serve it, and record
    the predictions' distribution as the prediction-drift baseline (tensor models get none)."""
    if not columns or not manifest.inputs:
        return manifest
    from model_packages.loading import load_model

    rows = _model_rows(columns, manifest.inputs)
    if rows.shape[0] > PREDICTION_BASELINE_ROWS:
        rows = rows[:: -(-rows.shape[0] // PREDICTION_BASELINE_ROWS)]
    try:
        predictions = np.asarray(load_model(staging, verify=False).predict(rows))
    except Exception as error:  # the same failure is reported by the warm-up check that follows
        del error
        return manifest
    if manifest.output.task == "classification":
        predictions = np.asarray([str(v.item() if hasattr(v, "item") else v) for v in predictions.reshape(-1)],
                                 dtype=object) if predictions.ndim == 1 else predictions
    prediction = prediction_baseline(predictions, manifest.output.task)
    if prediction is None:
        return manifest
    manifest = manifest.model_copy(update={"baseline": manifest.baseline.model_copy(update={"prediction": prediction})})
    write_manifest(manifest, staging)
    return manifest


def verify_package(package_dir: str | Path, *, load: bool = False) -> Manifest:
    """Check a package's files (`verify.verify_files`); with `load`, also load it the way the
    serving runtime does, warm-up prediction included, from both artifacts when it has two."""
    manifest = verify_files(package_dir)
    if load:
        from model_packages.serving.runner import load_runner

        load_runner(package_dir, verify=False)
        if manifest.serving is not None:
            load_runner(package_dir, verify=False, serve_with="source")
    return manifest


def describe_package(package_dir: str | Path) -> dict[str, Any]:
    """A summary of a package for `kaizen inspect`."""
    manifest = verify_package(package_dir)
    size = (Path(package_dir) / manifest.artifact).stat().st_size
    return {
        "name": manifest.name,
        "version": manifest.version,
        "framework": manifest.framework,
        "format": manifest.format,
        "artifact": manifest.artifact,
        "artifact_bytes": size,
        "artifact_sha256": manifest.artifact_sha256,
        "trusted": manifest.trusted,
        "model_input": manifest.model_input,
        "task": manifest.output.task,
        "labels": manifest.output.labels,
        "inputs": [f.model_dump(exclude_none=True) for f in manifest.inputs],
        "tensor_input": manifest.tensor_input.model_dump() if manifest.tensor_input else None,
        "metrics": manifest.baseline.metrics,
        "training_rows": manifest.baseline.rows,
        "lineage": manifest.lineage.model_dump(mode="json"),
        "serving": manifest.serving.model_dump(mode="json") if manifest.serving else None,
        "compilation": manifest.compilation.model_dump(mode="json", exclude_none=True)
        if manifest.compilation else None,
    }


def copy_without_serving_artifact(package_dir: str | Path, out_dir: str | Path) -> Path:
    """Copy a package without its compiled serving artifact, so its source framework serves it."""
    manifest = verify_package(package_dir)
    out = Path(out_dir)
    shutil.copytree(package_dir, out)
    if manifest.serving is not None:
        (out / manifest.serving.artifact).unlink()
        write_manifest(manifest.model_copy(update={"serving": None}), out)
    return out
