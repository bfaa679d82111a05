"""Request decoding and response encoding for JSON instances, CSV and Open Inference Protocol V2."""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

import numpy as np

from model_packages.errors import RequestError
from model_packages.serving.schema import InputSchema

V2_NUMERIC = {
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64",
}
V2_DTYPES = {"FP32": np.float32, "FP64": np.float64, "INT32": np.int32, "INT64": np.int64, "BOOL": np.bool_,
             "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
             "INT8": np.int8, "INT16": np.int16, "FP16": np.float16}
#: Most dimensions a V2 tensor may have (numpy's limit is 64; tabular inputs use 1 or 2).
MAX_V2_DIMS = 16


def parse_json(body: bytes) -> Any:
    """Parse a JSON body; NaN and Infinity tokens are parsed and later refused by the schema."""
    if not body:
        raise RequestError("request body is empty; expected JSON")
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError) as error:
        raise RequestError(f"request body is not valid JSON: {error}") from None
    except RecursionError:
        raise RequestError("request body is not valid JSON: nested too deeply") from None


#: Where the rows can be: Vertex/KServe V1 `instances`, Azure ML `data`, and MLflow's scoring
#: protocol (`dataframe_split`, `dataframe_records`, `instances`, `inputs`; plus `params`).
ROW_KEYS = ("instances", "dataframe_split", "dataframe_records", "inputs", "data")


def instances_of(payload: Any) -> tuple[Any, str, dict[str, Any]]:
    """The rows of a JSON payload (lists in feature order, or objects keyed by feature name), the
    key they came under, and the parameters. Exactly one of ROW_KEYS, as MLflow's scoring server
    requires; MLflow's `params` count as parameters."""
    if not isinstance(payload, dict):
        raise RequestError('request body must be a JSON object like {"instances": [[...], ...]}')
    parameters = _parameters(payload)
    found = [key for key in ROW_KEYS if key in payload]
    if not found:
        raise RequestError('request body has no "instances" field (or dataframe_split, dataframe_records, '
                           'inputs)', field="instances")
    if len(found) > 1:
        raise RequestError(f"request body has {' and '.join(found)}: give exactly one of them", field=found[1])
    key = found[0]
    rows = payload[key]
    if key == "dataframe_split":
        return _split_rows(rows), key, parameters
    if key == "dataframe_records" and not (isinstance(rows, list) and all(isinstance(r, dict) for r in rows)):
        raise RequestError("dataframe_records must be a list of objects keyed by column", field=key)
    if key == "inputs" and isinstance(rows, dict):  # TF-serving columnar form: {"column": [values]}
        return _columnar_rows(rows, key), key, parameters
    return rows, key, parameters


def _split_rows(split: Any) -> list[dict[str, Any]]:
    """pandas' `split` orientation ({"columns": [...], "data": [[...]], "index": [...]}) as rows."""
    if not isinstance(split, dict) or not isinstance(split.get("data"), list):
        raise RequestError('dataframe_split must be an object like {"columns": [...], "data": [[...]]}',
                           field="dataframe_split")
    columns = split.get("columns")
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise RequestError("dataframe_split.columns must be a list of column names", field="dataframe_split.columns")
    rows = []
    for i, values in enumerate(split["data"]):
        if not isinstance(values, list) or len(values) != len(columns):
            raise RequestError(f"dataframe_split.data[{i}] must be a list of {len(columns)} values (one per column)",
                               field=f"dataframe_split.data[{i}]")
        rows.append(dict(zip(columns, values, strict=True)))
    return rows


def _columnar_rows(columns: dict[str, Any], key: str) -> list[dict[str, Any]]:
    lengths = {name: len(values) for name, values in columns.items() if isinstance(values, list)}
    if len(lengths) != len(columns) or len(set(lengths.values())) > 1:
        raise RequestError(f"{key} as columns must map each column to a list of the same length", field=key)
    count = next(iter(lengths.values()), 0)
    return [{name: columns[name][i] for name in columns} for i in range(count)]


def rows_from_csv(body: bytes, schema: InputSchema) -> np.ndarray:
    """Parse CSV rows (an optional header row naming the features) into a validated matrix."""
    if getattr(schema, "decode_v2", None) is not None:  # a tensor model (serving/tensors.py)
        raise RequestError('CSV cannot carry a tensor input: send {"instances": [...]} or a V2 tensor', status=415)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestError("CSV body is not UTF-8 text") from None
    try:
        records = [r for r in csv.reader(io.StringIO(text)) if r]
    except csv.Error as error:
        raise RequestError(f"CSV body cannot be parsed: {error}") from None
    if not records:
        raise RequestError("CSV body has no rows")
    order = list(range(schema.width))
    if all(cell.strip() in schema.index for cell in records[0]):
        header = [cell.strip() for cell in records[0]]
        missing = [n for n, s in zip(schema.names, schema.specs, strict=True) if s.required and n not in header]
        if missing:
            raise RequestError(f"CSV header lacks required feature {missing[0]!r}", field=f"csv.{missing[0]}")
        order = [header.index(n) if n in header else -1 for n in schema.names]
        records = records[1:]
        if not records:
            raise RequestError("CSV body has a header but no rows")
    rows: list[list[Any]] = []
    for i, record in enumerate(records):
        if order == list(range(schema.width)) and len(record) != schema.width:
            raise RequestError(
                f"csv row {i} has {len(record)} values; the model takes {schema.width} features "
                f"({', '.join(schema.names)})",
                field=f"csv[{i}]",
            )
        row: list[Any] = []
        for j, k in enumerate(order):
            cell = record[k].strip() if 0 <= k < len(record) else ""
            row.append(_csv_value(cell, schema, i, j))
        rows.append(row)
    return schema.matrix(rows, field="csv")


def _csv_value(cell: str, schema: InputSchema, i: int, j: int) -> Any:
    if cell == "":
        return None
    if j in schema.string_cols:
        return cell
    if cell.lower() in ("true", "false"):
        return cell.lower() == "true"
    try:
        return float(cell)
    except ValueError:
        name = f"csv[{i}].{schema.names[j]}"
        shown = "the value" if schema.specs[j].sensitive else repr(cell[:40])
        raise RequestError(f"{name}: {shown} is not a number", field=name) from None


def rows_from_v2(payload: Any, schema: InputSchema, binary: bytes = b"") -> tuple[np.ndarray, dict[str, Any]]:
    """Decode a V2 inference request: one [n, features] tensor, or one [n] tensor per feature."""
    decode_tensor = getattr(schema, "decode_v2", None)  # deep-learning models: serving/tensors.py
    if decode_tensor is not None:
        return decode_tensor(payload, binary), _parameters(payload)
    if not isinstance(payload, dict):
        raise RequestError("V2 request must be a JSON object with an `inputs` list")
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise RequestError("V2 request needs a non-empty `inputs` list", field="inputs")
    offset = 0
    tensors: list[tuple[str, np.ndarray]] = []
    for k, tensor in enumerate(inputs):
        array, used = _v2_tensor(tensor, k, binary, offset)
        offset += used
        tensors.append((str(tensor.get("name")), array))
    if len(tensors) == 1:
        name, array = tensors[0]
        if array.ndim == 1 and schema.width == 1:
            array = array.reshape(-1, 1)
        elif array.ndim == 1 and array.shape[0] == schema.width:
            array = array.reshape(1, -1)
        if array.ndim != 2 or array.shape[1] != schema.width:
            raise RequestError(
                f"inputs[0] ({name}) has shape {list(array.shape)}; expected [rows, {schema.width}] "
                f"with features {', '.join(schema.names)}",
                field="inputs[0].shape",
            )
        matrix = array
    else:
        by_name = dict(tensors)
        unknown = [n for n in by_name if n not in schema.index]
        if unknown:
            raise RequestError(f"input tensor {unknown[0]!r} is not a feature of the model", field="inputs")
        missing = [n for n in schema.names if n not in by_name]
        if missing:
            raise RequestError(f"input tensor for feature {missing[0]!r} is missing", field="inputs")
        columns = [by_name[n].reshape(-1) for n in schema.names]
        if len({c.shape[0] for c in columns}) != 1:
            raise RequestError("per-feature input tensors must all have the same number of rows", field="inputs")
        matrix = np.column_stack(columns)
    if matrix.dtype.kind == "O" or schema.string_cols:  # string categories: checked value by value
        return schema.matrix(matrix.tolist(), field="inputs"), _parameters(payload)
    return schema.check(matrix.astype(np.float64), "inputs"), _parameters(payload)


def _parameters(payload: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for key in ("params", "parameters"):  # MLflow's name, then Vertex's
        params = payload.get(key) or {}
        if not isinstance(params, dict):
            raise RequestError(f"{key} must be an object", field=key)
        merged.update(params)
    return merged


def _v2_tensor(tensor: Any, k: int, binary: bytes, offset: int) -> tuple[np.ndarray, int]:
    where = f"inputs[{k}]"
    if not isinstance(tensor, dict):
        raise RequestError(f"{where} must be an object with name, shape, datatype and data", field=where)
    for key in ("name", "shape", "datatype"):
        if key not in tensor:
            raise RequestError(f"{where} lacks `{key}`", field=f"{where}.{key}")
    shape = tensor["shape"]
    if not isinstance(shape, list) or not shape or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise RequestError(f"{where}.shape must be a list of non-negative integers", field=f"{where}.shape")
    if len(shape) > MAX_V2_DIMS:
        raise RequestError(f"{where}.shape has {len(shape)} dimensions; at most {MAX_V2_DIMS} are supported",
                           field=f"{where}.shape")
    datatype = tensor["datatype"]
    if not isinstance(datatype, str) or (datatype not in V2_NUMERIC and datatype != "BYTES"):
        raise RequestError(f"{where}.datatype {datatype!r} is not a V2 datatype", field=f"{where}.datatype")
    count = math.prod(shape)
    if count == 0:
        raise RequestError(f"{where} is empty", field=f"{where}.shape")
    params = tensor.get("parameters") or {}
    size = params.get("binary_data_size") if isinstance(params, dict) else None
    if size is not None:
        if datatype not in V2_DTYPES or not isinstance(size, int):
            raise RequestError(f"{where}: binary data needs a fixed-size datatype", field=f"{where}.datatype")
        chunk = binary[offset : offset + size]
        dtype = np.dtype(V2_DTYPES[datatype]).newbyteorder("<")
        if len(chunk) != size or size != count * dtype.itemsize:
            raise RequestError(f"{where}: binary data size does not match shape {shape}", field=f"{where}.data")
        return np.frombuffer(chunk, dtype=dtype).reshape(shape), size
    data = tensor.get("data")
    if not isinstance(data, list):
        raise RequestError(f"{where}.data must be a list", field=f"{where}.data")
    try:
        array = np.array(data, dtype=object if datatype == "BYTES" else None)
    except ValueError:
        raise RequestError(f"{where}.data is ragged", field=f"{where}.data") from None
    if array.size != count:
        raise RequestError(f"{where}.data has {array.size} values; shape {shape} needs {count}",
                           field=f"{where}.data")
    if datatype.startswith("FP") and array.dtype.kind == "O":  # null: a missing value, NaN
        values = array.reshape(-1).tolist()
        if all(v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in values):
            array = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    if datatype != "BYTES" and array.dtype.kind not in "fiub":
        raise RequestError(f"{where}.data holds non-numeric values for datatype {datatype}",
                           field=f"{where}.data")
    return array.reshape(shape), 0


def v2_datatype(array: np.ndarray) -> str:
    kind = array.dtype.kind
    if kind == "f":
        return "FP64" if array.dtype.itemsize == 8 else "FP32"
    if kind in "iu":
        return "INT64"
    if kind == "b":
        return "BOOL"
    return "BYTES"


def to_json_values(array: np.ndarray) -> list[Any]:
    """Plain Python values of an array (numpy strings and numbers become str/int/float)."""
    if array.dtype.kind in "OSU":
        return [v if isinstance(v, str | int | float) else str(v) for v in array.tolist()]
    return array.tolist()


def to_csv(predictions: list[Any]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for value in predictions:
        writer.writerow(value if isinstance(value, list) else [value])
    return out.getvalue().encode()
