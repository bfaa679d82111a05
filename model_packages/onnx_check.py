"""Find ONNX tensors whose data lives outside the model file, reading the protobuf wire format.

`artifact_sha256` covers the ONNX file only, so a tensor stored as *external data* (a side file
such as `weights.bin`, or any path onnxruntime would open) could change or leak without the hash
noticing. Kaizen refuses such models instead of trusting onnxruntime's path checks. The scan needs
neither `onnx` nor `protobuf` (neither is in an ONNX-flavor image).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from model_packages.errors import PackageError

# Field numbers from onnx.proto (checked against the onnx package in tests).
_MODEL = {7: "graph", 20: "training", 25: "function"}
_TRAINING = {1: "graph", 2: "graph"}
_GRAPH = {1: "node", 5: "tensor", 15: "sparse"}
_FUNCTION = {7: "node"}
_NODE = {5: "attribute"}
_ATTRIBUTE = {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"}
_SPARSE = {1: "tensor", 2: "tensor"}
_SCHEMAS = {
    "model": _MODEL, "training": _TRAINING, "graph": _GRAPH, "function": _FUNCTION,
    "node": _NODE, "attribute": _ATTRIBUTE, "sparse": _SPARSE,
}
_TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION = 13, 14
_MAX_DEPTH = 64


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: memoryview) -> Iterator[tuple[int, int, Any]]:
    """Yield (field number, wire type, value) of one message; a memoryview for wire type 2."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            yield number, wire, value
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            size, pos = _varint(data, pos)
            if pos + size > len(data):
                raise ValueError("truncated field")
            yield number, wire, data[pos : pos + size]
            pos += size
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos > len(data):
            raise ValueError("truncated field")


def _location(tensor: memoryview) -> str | None:
    external = False
    location = None
    for number, wire, value in _fields(tensor):
        if number == _TENSOR_DATA_LOCATION and wire == 0 and value == 1:
            external = True
        elif number == _TENSOR_EXTERNAL_DATA and wire == 2:
            external = True
            key = entry = None
            for n, w, v in _fields(value):  # StringStringEntryProto: key = 1, value = 2
                if w == 2 and n == 1:
                    key = v
                elif w == 2 and n == 2:
                    entry = v
            if key is not None and bytes(key) == b"location" and entry is not None:
                location = bytes(entry).decode("utf-8", "replace")
    return (location or "?") if external else None


def external_data_locations(data: bytes) -> list[str]:
    """Locations of every tensor in the model that uses external data (empty: self-contained)."""
    found: list[str] = []
    stack: list[tuple[str, memoryview, int]] = [("model", memoryview(data), 0)]
    while stack:
        kind, message, depth = stack.pop()
        if depth > _MAX_DEPTH:
            raise ValueError("nested too deeply")
        if kind == "tensor":
            location = _location(message)
            if location is not None:
                found.append(location)
            continue
        schema = _SCHEMAS[kind]
        for number, wire, value in _fields(message):
            if wire == 2 and number in schema:
                stack.append((schema[number], value, depth + 1))
    return found


def refuse_external_data(data: bytes, name: str) -> None:
    """Raise PackageError when the ONNX model `name` reads tensor data from outside its file."""
    try:
        locations = external_data_locations(data)
    except ValueError as error:
        raise PackageError(f"artifact {name} is not a loadable ONNX model: {error}") from None
    if locations:
        raise PackageError(
            f"artifact {name} keeps tensor data outside the file (external data {locations[0]!r}); "
            "Kaizen packages must be self-contained so artifact_sha256 covers every byte the model "
            "reads: save the model with its weights inside the .onnx file"
        )
