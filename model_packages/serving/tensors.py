"""Tensor inputs for deep-learning ONNX models (images [N,3,H,W], sequences [N,T], ...).

The schema comes from the ONNX graph: the one input's name, element type and shape, where
symbolic or unknown dimensions (the batch, a sequence length) become -1. Requests carry a batch
as `{"instances": [...]}` nested arrays (one nested array per item, without the batch axis) or
as one Open Inference Protocol V2 tensor (JSON data or binary); both are checked against the
spec and answered with a 400 that names the problem.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from model_packages.errors import PackageError, RequestError
from model_packages.manifest import Manifest, TensorSpec
from model_packages.serving.schema import InputSchema

#: ONNX TensorProto element types Kaizen serves, as V2 datatypes.
ONNX_TO_V2 = {1: "FP32", 11: "FP64", 10: "FP16", 7: "INT64", 6: "INT32", 3: "INT8", 2: "UINT8", 9: "BOOL"}
V2_TO_NUMPY: dict[str, Any] = {
    "FP32": np.float32, "FP64": np.float64, "FP16": np.float16, "INT64": np.int64, "INT32": np.int32,
    "INT8": np.int8, "UINT8": np.uint8, "BOOL": np.bool_,
}
#: onnxruntime's input type strings, for the loader.
ORT_TO_NUMPY: dict[str, Any] = {
    "tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_,
}


def _load_graph(model: Any) -> Any:
    import onnx

    if isinstance(model, bytes):
        return onnx.load_from_string(model)
    if isinstance(model, str | os.PathLike):
        return onnx.load(str(model), load_external_data=False)
    return model


def tensor_spec_from_onnx(model: Any) -> TensorSpec | None:
    """The tensor input of an ONNX model, or None for a tabular model (one [N, features] input)."""
    graph = _load_graph(model).graph
    initializers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise PackageError(f"the ONNX model takes {len(inputs)} inputs; Kaizen serves models with one input tensor")
    tensor = inputs[0].type.tensor_type
    shape = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in tensor.shape.dim]
    if len(shape) == 2 and shape[1] > 0:
        return None
    datatype = ONNX_TO_V2.get(tensor.elem_type)
    if datatype is None:
        raise PackageError(f"the ONNX input {inputs[0].name!r} has element type {tensor.elem_type}, "
                           f"which Kaizen does not serve (use one of {', '.join(ONNX_TO_V2.values())})")
    if not shape:
        raise PackageError(f"the ONNX input {inputs[0].name!r} has no shape; export it with a batch axis")
    return TensorSpec(name=inputs[0].name, datatype=datatype, shape=[-1, *shape[1:]])  # type: ignore[arg-type]


def check_sample(spec: TensorSpec, sample: Any) -> np.ndarray:
    """The training/sample batch as an array of the spec's type and shape (PackageError if not)."""
    try:
        return _conform(spec, np.asarray(sample), "sample")
    except RequestError as error:
        raise PackageError(f"sample inputs do not fit the model: {error.message}") from None


def _conform(spec: TensorSpec, array: np.ndarray, field: str) -> np.ndarray:
    if array.dtype.kind not in "fiub":
        raise RequestError(f"{field} holds non-numeric values; {spec.name} takes {spec.datatype}", field=field)
    want = spec.shape
    if array.ndim != len(want) or any(w not in (-1, g) for w, g in zip(want, array.shape, strict=False)):
        raise RequestError(f"{field} has shape {list(array.shape)}; {spec.name} takes {_shape_text(want)}",
                           field=field)
    if array.shape[0] == 0:
        raise RequestError(f"{field} is empty", field=field)
    dtype = V2_TO_NUMPY[spec.datatype]
    if np.dtype(dtype).kind in "iub" and array.dtype.kind == "f" and (
        not np.all(np.isfinite(array)) or not np.all(array == np.round(array))
    ):
        raise RequestError(f"{field} holds non-integer values; {spec.name} takes {spec.datatype}", field=field)
    out = array.astype(dtype, copy=False)
    if out.dtype.kind == "f" and not np.all(np.isfinite(out)):
        raise RequestError(f"{field} holds NaN or infinite values", field=field)
    return out


def _shape_text(shape: list[int]) -> str:
    return "[" + ", ".join("N" if i == 0 else ("?" if d == -1 else str(d)) for i, d in enumerate(shape)) + "]"


class TensorSchema(InputSchema):
    """The request side of a tensor model: batches from `instances` or a V2 tensor."""

    def __init__(self, manifest: Manifest) -> None:
        super().__init__(manifest)
        if manifest.tensor_input is None:
            raise PackageError("TensorSchema needs a manifest with tensor_input")
        self.tensor = manifest.tensor_input

    def matrix(self, rows: Any, field: str = "instances") -> np.ndarray:
        """A batch from `instances`: a list with one nested array per item."""
        if not isinstance(rows, list) or not rows:
            raise RequestError(f"{field} must be a non-empty list of {_shape_text(self.tensor.shape[1:])} arrays",
                               field=field)
        try:
            array = np.asarray(rows)
        except ValueError:
            raise RequestError(f"{field} is ragged: every item must have shape "
                               f"{_shape_text(self.tensor.shape)[4:-1] or 'scalar'}", field=field) from None
        if array.dtype == object:
            raise RequestError(f"{field} is ragged or holds non-numbers", field=field)
        return _conform(self.tensor, array, field)

    def check(self, array: np.ndarray, field: str, columns: list[int] | None = None) -> np.ndarray:
        return _conform(self.tensor, array, field)

    def decode_v2(self, payload: Any, binary: bytes) -> np.ndarray:
        """One V2 input tensor with the model's full shape (batch first)."""
        from model_packages.serving.codecs import _v2_tensor

        if not isinstance(payload, dict):
            raise RequestError("V2 request must be a JSON object with an `inputs` list")
        inputs = payload.get("inputs")
        if not isinstance(inputs, list) or len(inputs) != 1:
            raise RequestError(f"V2 request needs exactly one input tensor ({self.tensor.name})", field="inputs")
        array, _ = _v2_tensor(inputs[0], 0, binary, 0)
        if array.dtype == object:
            raise RequestError(f"inputs[0] must be {self.tensor.datatype}, not BYTES", field="inputs[0].datatype")
        return _conform(self.tensor, array, "inputs[0]")

    def warm_up_batch(self) -> np.ndarray:
        """One zero item of the spec's shape (dynamic dimensions as 1)."""
        shape = [1 if d == -1 else d for d in self.tensor.shape]
        return np.zeros(shape, dtype=V2_TO_NUMPY[self.tensor.datatype])


def tensor_data_hash(sample: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(sample).tobytes()).hexdigest()


def graph_classes(model: Any) -> int | None:
    """Number of classes of a classifier whose first output is [N, K] with K fixed."""
    outputs = _load_graph(model).graph.output
    dims = outputs[0].type.tensor_type.shape.dim if outputs else []
    if len(dims) == 2 and dims[1].HasField("dim_value") and dims[1].dim_value > 0:
        return int(dims[1].dim_value)
    return None

