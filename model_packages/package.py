"""Create, verify and describe model packages (a directory with `kaizen.yaml` and one artifact)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from model_packages import __version__
from model_packages.baseline import compute_baseline
from model_packages.compile import Compiled, compile_for_serving, sklearn_to_onnx
from model_packages.errors import PackageError
from model_packages.manifest import (
    FRAMEWORK_FORMATS,
    MANIFEST_NAME,
    UNSAFE_FORMATS,
    Compilation,
    FeatureSpec,
    Lineage,
    Manifest,
    OutputSpec,
    Scalar,
    ServingArtifact,
    TensorSpec,
    read_manifest,
    write_manifest,
)
from model_packages.serving.tensors import check_sample, tensor_data_hash, tensor_spec_from_onnx

__all__ = ["create_package", "describe_package", "sklearn_to_onnx", "verify_package"]

ARTIFACT_NAMES = {"skops": "model.skops", "onnx": "model.onnx", "pickle": "model.pkl", "joblib": "model.joblib",
                  "ubj": "model.ubj", "json": "model.json", "txt": "model.txt"}
#: The default artifact format of each framework: its own format, never pickle.
DEFAULT_FORMATS = {"sklearn": "skops", "onnx": "onnx", "xgboost": "ubj", "lightgbm": "txt"}
_SKOPS_MAGIC = b"PK\x03\x04"


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _columns(x: Any, feature_names: Sequence[str] | None) -> dict[str, np.ndarray]:
    """Split training data (DataFrame, mapping of columns, 2-D array or rows) into named columns."""
    if isinstance(x, Mapping):
        return {str(name): np.asarray(column) for name, column in x.items()}
    if hasattr(x, "columns") and hasattr(x, "to_numpy"):
        names = [str(c) for c in x.columns]
        return {name: x[col].to_numpy() for name, col in zip(names, x.columns, strict=True)}
    array = np.asarray(x)
    if array.ndim != 2:
        raise PackageError(f"training data must be 2-D (rows x features), got shape {array.shape}")
    names = list(feature_names) if feature_names else [f"f{i}" for i in range(array.shape[1])]
    if len(names) != array.shape[1]:
        raise PackageError(f"{len(names)} feature names given for {array.shape[1]} columns of training data")
    return {name: array[:, i] for i, name in enumerate(names)}


def _infer_feature(name: str, column: np.ndarray, ranges: Mapping[str, tuple[float, float]]) -> FeatureSpec:
    low, high = ranges.get(name, (None, None))
    if column.dtype.kind == "b":
        return FeatureSpec(name=name, dtype="boolean")
    if column.dtype.kind in "iu":
        return FeatureSpec(name=name, dtype="integer", minimum=low, maximum=high)
    if column.dtype.kind == "f":
        return FeatureSpec(
            name=name, dtype="float", minimum=low, maximum=high, allow_nan=bool(np.isnan(column).any())
        )
    categories: list[Scalar] = sorted({str(v) for v in column if v is not None})
    return FeatureSpec(name=name, dtype="categorical", categories=categories)


def _data_hash(columns: Mapping[str, np.ndarray], y: Any) -> str:
    digest = hashlib.sha256()
    for name, column in columns.items():
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(column).astype(str).tobytes() if column.dtype.kind == "O"
                      else np.ascontiguousarray(column).tobytes())
    if y is not None:
        digest.update(np.ascontiguousarray(np.asarray(y)).tobytes())
    return digest.hexdigest()


def _git_revision() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


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


def _compile(model: Any, columns: Mapping[str, np.ndarray], task: str, manifest: Manifest,
             artifact: Path) -> Compiled:
    """Compile for serving when the training data is numeric (the compiled graph takes one
    float tensor); the reason otherwise. XGBoost/LightGBM: the Booster the runtime would load
    from `artifact` is compiled and is the reference (labels as indices into output.labels)."""
    text = [name for name, c in columns.items() if np.asarray(c).dtype.kind not in "fiub"]
    if text:
        return Compiled(None, f"column {text[0]!r} is not numeric (the compiled graph takes "
                              "one float tensor); the source framework serves the model")
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
        if task == "classification":
            proba = fitted.predict_proba(matrix) if hasattr(fitted, "predict_proba") else None
            reference = (fitted.predict(matrix), proba)
        else:
            reference = (fitted.predict(matrix), None)
    except Exception as error:  # the model's own predict fails on the training matrix
        return Compiled(None, f"{type(model).__name__}.predict failed on the training "
                              f"matrix: {error}")
    return compile_for_serving(model, matrix, task, framework, reference)


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
    columns = _columns(x, feature_names) if tensor is None else {}
    specs = list(features) if features else [_infer_feature(n, c, ranges or {}) for n, c in columns.items()]
    if [s.name for s in specs] != list(columns):
        raise PackageError("feature specs must name the training data's columns in order")
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
    if metrics is None and y is not None and hasattr(model, "score"):
        matrix = x if hasattr(x, "columns") else np.column_stack([np.asarray(c) for c in columns.values()])
        key = "training_accuracy" if task == "classification" else "training_r2"
        scorer: Any = model
        metrics = {key: float(scorer.score(matrix, y))}
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
            inputs=specs,
            tensor_input=tensor,
            input_example=[list(r) for r in input_example] if input_example else None,
            output=output,
            baseline=baseline,
            lineage=Lineage(
                data_sha256=_data_hash(columns, y) if sample is None else tensor_data_hash(sample),
                code_revision=code_revision or _git_revision(),
                parameters=dict(parameters) if parameters is not None else _simple_params(model),
                created_at=datetime.now(UTC).replace(microsecond=0),
                kaizen_version=__version__,
            ),
        )
        if compile_onnx and fmt != "onnx":
            compiled = _compile(model, columns, task, manifest, artifact)
            manifest = manifest.model_copy(update={"compilation": Compilation(
                compiled=compiled.onnx is not None, compiler=compiled.compiler, reason=compiled.reason)})
            if compiled.onnx is not None:
                serving_path = staging / "serving.onnx"
                serving_path.write_bytes(compiled.onnx)
                manifest = manifest.model_copy(update={"serving": ServingArtifact(
                    artifact=serving_path.name, artifact_sha256=sha256_file(serving_path),
                    parity_rows=len(next(iter(columns.values()))), max_abs_diff=compiled.max_abs_diff,
                    label_index=compiled.label_index)})
        write_manifest(manifest, staging)
        verify_package(staging, load=True)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def verify_package(package_dir: str | Path, *, load: bool = False) -> Manifest:
    """Check a package: manifest schema, artifact presence, hash and format; with `load`, also
    load the model and check that it agrees with the manifest's schema."""
    directory = Path(package_dir)
    manifest = read_manifest(directory)
    artifact = directory / manifest.artifact
    if not artifact.is_file():
        raise PackageError(f"artifact {manifest.artifact} named in {MANIFEST_NAME} is missing")
    actual = sha256_file(artifact)
    if actual != manifest.artifact_sha256:
        raise PackageError(
            f"artifact {manifest.artifact} is corrupt: sha256 {actual} does not match "
            f"artifact_sha256 {manifest.artifact_sha256} in {MANIFEST_NAME}"
        )
    if manifest.serving is not None:
        serving = directory / manifest.serving.artifact
        if not serving.is_file():
            raise PackageError(f"serving artifact {manifest.serving.artifact} named in {MANIFEST_NAME} is missing")
        if sha256_file(serving) != manifest.serving.artifact_sha256:
            raise PackageError(
                f"serving artifact {manifest.serving.artifact} is corrupt: its sha256 does not match "
                f"serving.artifact_sha256 in {MANIFEST_NAME}"
            )
    if manifest.format == "skops":
        with open(artifact, "rb") as handle:
            if handle.read(4) != _SKOPS_MAGIC:
                raise PackageError(f"artifact {manifest.artifact} is not a skops file")
    if load:
        from model_packages.loading import load_model

        load_model(directory, verify=False)
        if manifest.serving is not None:
            load_model(directory, verify=False, serve_with="source")
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
