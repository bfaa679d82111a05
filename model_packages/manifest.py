"""The model package manifest (`kaizen.yaml`) as pydantic models."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from model_packages.errors import PackageError

MANIFEST_NAME = "kaizen.yaml"
FORMAT_VERSION = 1

Framework = Literal["sklearn", "onnx", "xgboost", "lightgbm"]
#: ubj/json: XGBoost's own model formats; txt: LightGBM's text model. None of them runs code.
ArtifactFormat = Literal["skops", "onnx", "pickle", "joblib", "ubj", "json", "txt"]
FeatureType = Literal["float", "integer", "boolean", "categorical"]
Task = Literal["classification", "regression"]
ModelInput = Literal["array", "dataframe"]
Scalar = str | int | float

FRAMEWORK_FORMATS: dict[str, set[str]] = {
    "sklearn": {"skops", "pickle", "joblib"},
    "onnx": {"onnx"},
    "xgboost": {"ubj", "json"},
    "lightgbm": {"txt"},
}
UNSAFE_FORMATS = {"pickle", "joblib"}

Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
SemVer = Annotated[
    str,
    Field(pattern=r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$"),
]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeatureSpec(_Model):
    """One input feature: its type, whether it is required and the values it may take."""

    name: Annotated[str, Field(min_length=1, max_length=128)]
    dtype: FeatureType = "float"
    required: bool = True
    minimum: float | None = None
    maximum: float | None = None
    categories: list[Scalar] | None = None
    allow_nan: bool = False
    default: float | None = None
    description: str | None = None
    #: null (a missing value) is accepted and given to the model as missing (NaN): the model
    #: handles it (an imputer in the pipeline, or missing values in the training data).
    nullable: bool = False
    #: a categorical value outside `categories` is accepted (the model ignores unseen categories,
    #: e.g. OneHotEncoder(handle_unknown="ignore")) and counted as "unseen" for drift.
    allow_unknown: bool = False
    #: the pandas dtype of the training column, for models fitted on a DataFrame.
    pandas_dtype: Annotated[str, Field(max_length=64)] | None = None
    #: personal or secret data: never written by data capture, never echoed in errors or logs, and
    #: its baseline keeps only counts (no quantiles, bins or category shares).
    sensitive: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> FeatureSpec:
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError(f"feature {self.name!r}: minimum {self.minimum} > maximum {self.maximum}")
        if self.dtype == "categorical" and not self.categories:
            raise ValueError(f"feature {self.name!r}: categorical features need `categories`")
        if self.dtype != "categorical" and self.categories:
            raise ValueError(f"feature {self.name!r}: only categorical features take `categories`")
        if self.default is not None and not math.isfinite(self.default):
            raise ValueError(f"feature {self.name!r}: default must be finite")
        if self.allow_unknown and self.dtype != "categorical":
            raise ValueError(f"feature {self.name!r}: only categorical features take `allow_unknown`")
        return self

    @property
    def accepts_null(self) -> bool:
        return self.nullable or not self.required

    @property
    def numeric_categories(self) -> bool:
        return all(isinstance(c, int | float) for c in self.categories or [])


class OutputSpec(_Model):
    """What the model returns."""

    task: Task
    name: str = "prediction"
    labels: list[Scalar] | None = None
    probabilities: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> OutputSpec:
        if self.task == "classification" and not self.labels:
            raise ValueError("classification output needs `labels`")
        if self.task == "regression" and (self.labels or self.probabilities):
            raise ValueError("regression output takes neither `labels` nor `probabilities`")
        return self


class FeatureBaseline(_Model):
    """Training statistics of one feature: the reference that drift is measured against."""

    count: int
    missing: int = 0
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    quantiles: dict[str, float] = Field(default_factory=dict)
    bin_edges: list[float] = Field(default_factory=list)
    bin_fractions: list[float] = Field(default_factory=list)
    category_fractions: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> FeatureBaseline:
        if self.bin_fractions and len(self.bin_fractions) != len(self.bin_edges) + 1:
            raise ValueError("bin_fractions must have one more entry than bin_edges")
        if any(b <= a for a, b in zip(self.bin_edges, self.bin_edges[1:], strict=False)):
            raise ValueError("bin_edges must be strictly increasing")
        return self


class Baseline(_Model):
    """The training baseline: per-feature statistics and training metrics."""

    rows: int
    features: dict[str, FeatureBaseline]
    metrics: dict[str, float] = Field(default_factory=dict)
    #: The model's predictions on the training rows (label shares for classifiers, value deciles
    #: for regressors): the reference for prediction drift. Older packages have none.
    prediction: FeatureBaseline | None = None


class Lineage(_Model):
    """Where the model came from."""

    data_sha256: Sha256
    code_revision: str | None = None
    parameters: dict[str, str | int | float | bool | None] = Field(default_factory=dict)
    created_at: datetime
    kaizen_version: str


class ServingArtifact(_Model):
    """A compiled copy of the model that the runtime serves instead of the source artifact.

    Written by `create_package` only when its predictions on every training row match the
    source model's (labels exactly, numbers within `max_abs_diff`)."""

    format: Literal["onnx"] = "onnx"
    artifact: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]+$")]
    artifact_sha256: Sha256
    parity_rows: int
    max_abs_diff: float
    #: The graph's first output is an index into output.labels (XGBoost/LightGBM boosters),
    #: not the label itself.
    label_index: bool = False
    #: "columns": the graph takes one input per feature, named like it (string tensors for string
    #: categoricals); "matrix": one 2-D tensor in input order.
    inputs: Literal["matrix", "columns"] = "matrix"


class TensorSpec(_Model):
    """The one input tensor of a deep-learning model, from its ONNX graph: -1 marks a dynamic
    dimension; the first dimension is the batch."""

    name: Annotated[str, Field(min_length=1, max_length=256)]
    datatype: Literal["FP32", "FP64", "FP16", "INT64", "INT32", "INT8", "UINT8", "BOOL"]
    shape: Annotated[list[Annotated[int, Field(ge=-1)]], Field(min_length=1)]

    @model_validator(mode="after")
    def _consistent(self) -> TensorSpec:
        if self.shape[0] != -1:
            raise ValueError("tensor_input.shape must start with the dynamic batch dimension -1")
        if 0 in self.shape:
            raise ValueError("tensor_input.shape dimensions must be positive or -1")
        return self


class Compilation(_Model):
    """Whether `create_package` compiled the model for serving, and why not when it did not."""

    compiled: bool
    compiler: str | None = None
    reason: str | None = None


class Manifest(_Model):
    """The whole `kaizen.yaml`."""

    kaizen_package: Literal[1] = FORMAT_VERSION
    name: Name
    version: SemVer
    description: str | None = None
    framework: Framework
    format: ArtifactFormat
    artifact: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]+$")]
    artifact_sha256: Sha256
    trusted: bool = False
    serving: ServingArtifact | None = None
    #: what the model is given: a 2-D array in `inputs` order, or (for a model fitted on a
    #: pandas DataFrame, i.e. with `feature_names_in_`) a DataFrame with `inputs` as columns,
    #: in order, each with its `pandas_dtype` (categoricals as strings).
    model_input: ModelInput = "array"
    compilation: Compilation | None = None
    #: Deep-learning ONNX models take one tensor instead of named features (`inputs` is empty).
    tensor_input: TensorSpec | None = None
    inputs: list[FeatureSpec] = Field(default_factory=list)
    #: Rows (in `inputs` order) the runtime predicts at start-up, e.g. an MLflow input example;
    #: without them it predicts one row of training medians.
    input_example: list[list[Scalar | bool | None]] | None = None
    output: OutputSpec
    baseline: Baseline
    lineage: Lineage

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        if self.serving is not None and self.serving.artifact == self.artifact:
            raise ValueError("serving.artifact must differ from artifact")
        if not self.inputs and self.tensor_input is None:
            raise ValueError("inputs needs at least one feature (or a tensor_input)")
        if self.inputs and self.tensor_input is not None:
            raise ValueError("a model takes either named inputs or one tensor_input, not both")
        if self.tensor_input is not None and self.format != "onnx":
            raise ValueError("tensor_input is for ONNX models")
        if self.format not in FRAMEWORK_FORMATS[self.framework]:
            raise ValueError(f"format {self.format!r} does not belong to framework {self.framework!r}")
        names = [f.name for f in self.inputs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate input feature names: {', '.join(duplicates)}")
        unknown = sorted(set(self.baseline.features) - set(names))
        if unknown:
            raise ValueError(f"baseline names features that are not inputs: {', '.join(unknown)}")
        return self

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.inputs]


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "manifest"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def parse_manifest(data: object, source: str = MANIFEST_NAME) -> Manifest:
    """Validate manifest data, raising PackageError that names each bad field."""
    try:
        return Manifest.model_validate(data)
    except ValidationError as error:
        raise PackageError(f"{source} is invalid: {_describe(error)}") from None


def read_manifest(package_dir: str | Path) -> Manifest:
    """Read and validate `kaizen.yaml` from a package directory."""
    path = Path(package_dir) / MANIFEST_NAME
    if not path.is_file():
        raise PackageError(f"{package_dir} is not a model package: {MANIFEST_NAME} is missing")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise PackageError(f"{path} is not valid YAML: {error}") from None
    return parse_manifest(data, str(path))


def write_manifest(manifest: Manifest, package_dir: str | Path) -> Path:
    """Write the manifest as YAML with a stable key order."""
    path = Path(package_dir) / MANIFEST_NAME
    data = manifest.model_dump(mode="json", exclude_none=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path
