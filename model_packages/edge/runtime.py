"""The minimal edge runtime: an edge bundle + onnxruntime + Kaizen's validation code.

No HTTP framework, no scikit-learn, no metrics server: what a device runs. It imports numpy,
pydantic/PyYAML (the manifest model), onnxruntime, and the serving runtime's input schema (the very
checks the server applies), and scores rows from JSON Lines::

    python -m model_packages.edge run BUNDLE --input rows.jsonl [--probabilities] [--out FILE]

Each input line is a row (a list in feature order, or an object keyed by feature name) or, for a
tensor-input model, one item: a nested array of the signature's shape without the batch axis (what
the server takes as one of `instances`); each output line is ``{"prediction": …}`` (plus
``"probabilities"``), or ``{"row": i, "error": …}`` for a row the schema refuses (exit status 3
when there was any). Every file of the bundle is checked against
the hashes in bundle.json before the model loads.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from model_packages.errors import PackageError, RequestError
from model_packages.manifest import Manifest

_HASHED = ("model.onnx", "schema.json", "baseline.json")


class BundleError(PackageError):
    """The bundle is incomplete, altered or unreadable."""


def read_bundle(directory: str | Path) -> tuple[dict[str, Any], Manifest]:
    """bundle.json and the manifest of a bundle, every file checked against its recorded hash."""
    root = Path(directory)
    info_path = root / "bundle.json"
    if not info_path.is_file():
        raise BundleError(f"{root} is not an edge bundle: bundle.json is missing")
    try:
        info = json.loads(info_path.read_text())
        recorded = info["files"]
    except (ValueError, KeyError, TypeError):
        raise BundleError(f"{info_path} is not a Kaizen edge bundle description") from None
    for name in _HASHED:
        path = root / name
        if not path.is_file():
            raise BundleError(f"edge bundle {root}: {name} is missing")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != recorded.get(name):
            raise BundleError(f"edge bundle {root}: {name} has sha256 {digest}, bundle.json records "
                              f"{recorded.get(name)}")
    schema = json.loads((root / "schema.json").read_text())
    baseline = json.loads((root / "baseline.json").read_text())
    try:
        manifest = Manifest.model_validate({**schema, "baseline": baseline})
    except ValueError as error:
        raise BundleError(f"edge bundle {root}: schema.json is not a valid schema: {error}") from None
    return info, manifest


class EdgeModel:
    """A bundle's model behind the server's input validation."""

    def __init__(self, directory: str | Path) -> None:
        from model_packages.loading import OnnxModel
        from model_packages.serving.schema import InputSchema
        from model_packages.serving.tensors import TensorSchema

        self.directory = Path(directory)
        self.info, self.manifest = read_bundle(self.directory)
        self.model = OnnxModel(self.manifest, self.directory / "model.onnx")
        self.schema = TensorSchema(self.manifest) if self.manifest.tensor_input else InputSchema(self.manifest)
        self.labels = [str(label) for label in self.manifest.output.labels or []]

    def predict(self, rows: list[Any]) -> list[dict[str, Any]]:
        """Validate `rows` (RequestError naming the row and feature, or the tensor's shape/type
        problem) and score them."""
        from model_packages.serving.codecs import to_json_values

        matrix = self.schema.matrix(rows)
        predictions = to_json_values(self.model.predict(matrix))
        proba = self.model.predict_proba(matrix)
        out = [{"prediction": p} for p in predictions]
        if proba is not None:
            for item, p in zip(out, np.asarray(proba, float).tolist(), strict=True):
                item["probabilities"] = dict(zip(self.labels, p, strict=False))
        return out


def score_lines(model: EdgeModel, lines: Iterable[str], *, probabilities: bool = False,
                chunk: int = 1024) -> Iterator[dict[str, Any]]:
    """Score JSON Lines rows in chunks; a chunk with a bad row is scored row by row so that
    every bad row gets its own error and the good ones their answer."""
    batch: list[tuple[int, Any]] = []

    def flush() -> Iterator[dict[str, Any]]:
        try:
            answers = model.predict([row for _, row in batch])
            pairs = list(zip(batch, answers, strict=True))
        except RequestError:
            pairs = []
            for index, row in batch:
                try:
                    pairs.append(((index, row), model.predict([row])[0]))
                except RequestError as error:
                    pairs.append(((index, row), {"row": index, "error": str(error)}))
        for (_, _), answer in pairs:
            if not probabilities:
                answer.pop("probabilities", None)
            yield answer

    for number, line in enumerate(lines):
        text = line.strip()
        if not text:
            continue
        try:
            row = json.loads(text)
        except ValueError:
            yield from flush()
            batch = []
            yield {"row": number, "error": f"line {number + 1} is not JSON"}
            continue
        batch.append((number, row))
        if len(batch) >= chunk:
            yield from flush()
            batch = []
    if batch:
        yield from flush()
