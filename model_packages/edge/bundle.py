"""`kaizen export edge`: a model package -> an edge bundle (a directory, then an OCI artifact).

A bundle holds exactly what a device needs to score rows like the server does::

    model.onnx     the ONNX model the server runs (the package's ONNX artifact or its compiled
                   serving.onnx), optionally quantised (onnxruntime dynamic int8 quantisation)
    schema.json    the package manifest without the baseline: input schema, output, serving mode
    baseline.json  the training baseline (per-feature statistics, for drift on the device)
    bundle.json    name, version, source artifact hashes, the sha256 of every file, and the
                   parity of model.onnx against the server's model (rows, max_abs_diff, labels)

The parity rows are the package's warm-up rows plus rows built from the baseline (each quantile
level across all features, each feature at each histogram edge with the others at their medians),
so they are in the training distribution without shipping training data.

A tensor-input model (images [N,3,H,W], token sequences [N,T], ...) carries its signature in
schema.json (`tensor_input`: name, datatype, shape; -1 for dynamic dimensions) and bundle.json;
its parity batch is seeded and of the signature's shape (see :func:`parity_tensor`), since such a
package's baseline has no per-feature statistics to build rows from.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model_packages.errors import KaizenError, PackageError
from model_packages.manifest import Manifest

BUNDLE_FORMAT = 1
FILES = ("model.onnx", "schema.json", "baseline.json", "bundle.json")


class EdgeError(KaizenError):
    """The edge bundle could not be made, pushed, pulled or checked."""


@dataclass
class Parity:
    rows: int
    max_abs_diff: float
    labels_equal: float  # fraction of rows whose label is the server's (classification), else 1.0

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "max_abs_diff": self.max_abs_diff, "labels_equal": self.labels_equal}


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def onnx_source(manifest: Manifest, package: Path) -> Path:
    """The ONNX file the server runs for this package; packages without one are refused."""
    if manifest.serving is not None:
        return package / manifest.serving.artifact
    if manifest.format == "onnx":
        return package / manifest.artifact
    raise EdgeError(
        f"package {manifest.name} {manifest.version} has no ONNX model: an edge bundle needs an ONNX "
        f"artifact or a compiled serving.onnx (its {manifest.framework} model did not compile; "
        "see `kaizen inspect`)"
    )


def parity_rows(manifest: Manifest) -> list[list[Any]]:
    """Warm-up rows plus baseline rows (quantile levels; each feature at its histogram edges)."""
    from model_packages.baseline import typical_row

    base = typical_row(manifest)
    rows: list[list[Any]] = [list(r) for r in manifest.input_example or []]
    rows.append(list(base))
    numeric = [
        (i, spec, manifest.baseline.features.get(spec.name))
        for i, spec in enumerate(manifest.inputs)
        if spec.dtype in ("float", "integer")
    ]
    levels = sorted({q for _, _, b in numeric if b for q in b.quantiles})
    for level in levels:
        row = list(base)
        for i, spec, b in numeric:
            value = b.quantiles.get(level) if b else None
            if value is not None:
                row[i] = _in_range(spec, value)
        rows.append(row)
    for i, spec, b in numeric:
        for edge in (b.bin_edges if b else []):
            row = list(base)
            row[i] = _in_range(spec, edge)
            rows.append(row)
    return rows


PARITY_ITEMS = 16
PARITY_DYNAMIC = 4  # a dynamic non-batch dimension (a sequence length) in the parity batch


def parity_tensor(manifest: Manifest, seed: int = 0) -> np.ndarray:
    """A seeded batch of PARITY_ITEMS items of the tensor signature: standard normal floats,
    uint8 over 0..255, booleans, other integers 0/1 (a safe index for any embedding table);
    dynamic dimensions PARITY_DYNAMIC long. Item 0 is all zeros (the server's warm-up item)."""
    from model_packages.serving.tensors import V2_TO_NUMPY

    spec = manifest.tensor_input
    if spec is None:
        raise EdgeError(f"{manifest.name} takes named inputs, not a tensor")
    shape = (PARITY_ITEMS, *(PARITY_DYNAMIC if d == -1 else d for d in spec.shape[1:]))
    dtype = np.dtype(V2_TO_NUMPY[spec.datatype])
    rng = np.random.default_rng(seed)
    if dtype.kind == "f":
        batch = rng.standard_normal(shape).astype(dtype)
    elif dtype == np.uint8:
        batch = rng.integers(0, 256, shape).astype(dtype)
    else:
        batch = rng.integers(0, 2, shape).astype(dtype)
    batch[0] = 0
    return batch


def _in_range(spec: Any, value: float) -> float:
    if spec.dtype == "integer":
        value = float(round(value))
    low = spec.minimum if spec.minimum is not None else -np.inf
    high = spec.maximum if spec.maximum is not None else np.inf
    return float(np.clip(value, low, high))


def _edge_manifest(manifest: Manifest, model_sha: str) -> Manifest:
    """The package manifest whose ONNX model is the bundle's model.onnx (hash included)."""
    if manifest.serving is not None:
        serving = manifest.serving.model_copy(update={"artifact": "model.onnx", "artifact_sha256": model_sha})
        return manifest.model_copy(update={"serving": serving})
    return manifest.model_copy(update={"artifact": "model.onnx", "artifact_sha256": model_sha})


def quantize(source: Path, target: Path) -> int:
    """Dynamic int8 quantisation (onnxruntime.quantization); returns the number of weight
    tensors quantised. A graph without float32 MatMul/Gemm weights (e.g. a double-precision
    scikit-learn conversion) has nothing to quantise and is refused."""
    try:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as error:
        raise EdgeError(f"quantisation needs onnx and onnxruntime ({error}): pip install 'kaizen-ml[onnx]'") from None
    model = onnx.load(str(source))
    floats = {t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    weights = [n for n in model.graph.node if n.op_type in ("MatMul", "Gemm") and floats & set(n.input)]
    if not weights:
        kinds = sorted({onnx.TensorProto.DataType.Name(t.data_type) for t in model.graph.initializer})
        raise EdgeError(
            f"nothing to quantise in {source.name}: dynamic quantisation handles float32 MatMul/Gemm "
            f"weights and this graph has none (weights: {', '.join(kinds) or 'none'}); export without "
            "--quantize"
        )
    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
    quantized = onnx.load(str(target))
    return sum(1 for t in quantized.graph.initializer if t.data_type == onnx.TensorProto.INT8)


def measure_parity(reference: Any, candidate: Any, matrix: np.ndarray, task: str) -> Parity:
    """Compare `candidate`'s answers with `reference`'s (both LoadedModel-like) on `matrix`."""
    ref = np.asarray(reference.predict(matrix))
    got = np.asarray(candidate.predict(matrix))
    diffs = [0.0]
    labels_equal = 1.0
    if task == "classification":
        labels_equal = float(np.mean([str(a) == str(b) for a, b in zip(ref, got, strict=True)]))
        p_ref, p_got = reference.predict_proba(matrix), candidate.predict_proba(matrix)
        if p_ref is not None and p_got is not None:
            diffs.append(float(np.max(np.abs(np.asarray(p_ref, float) - np.asarray(p_got, float)))))
    else:
        diffs.append(float(np.max(np.abs(ref.astype(float) - got.astype(float)))))
    return Parity(rows=int(matrix.shape[0]), max_abs_diff=max(diffs), labels_equal=labels_equal)


def export_bundle(package_dir: str | Path, out_dir: str | Path, *, quantise: bool = False) -> dict[str, Any]:
    """Write the edge bundle of a package into `out_dir` (replaced only when complete);
    returns bundle.json's content."""
    from model_packages.loading import OnnxModel, load_model
    from model_packages.package import verify_package
    from model_packages.serving.schema import InputSchema
    from model_packages.serving.tensors import TensorSchema

    package = Path(package_dir)
    manifest = verify_package(package)
    source = onnx_source(manifest, package)
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".kaizen-edge-", dir=out.parent) as tmp:
        work = Path(tmp) / "bundle"
        work.mkdir()
        model_path = work / "model.onnx"
        quantised = 0
        if quantise:
            quantised = quantize(source, model_path)
        else:
            shutil.copyfile(source, model_path)
        model_sha = sha256_bytes(model_path.read_bytes())
        edge = _edge_manifest(manifest, model_sha)
        server = load_model(package, serve_with="compiled")
        try:
            device = OnnxModel(edge, model_path)
        except PackageError as error:
            raise EdgeError(f"the bundle's model does not load: {error}") from None
        if manifest.tensor_input is not None:
            matrix = TensorSchema(manifest).check(parity_tensor(manifest), field="parity")
        else:
            matrix = InputSchema(manifest).matrix(parity_rows(manifest))
        parity = measure_parity(server, device, matrix, manifest.output.task)
        schema = edge.model_dump(mode="json", exclude={"baseline"}, exclude_none=True)
        baseline = edge.baseline.model_dump(mode="json")
        files: dict[str, bytes] = {
            "schema.json": json.dumps(schema, indent=1, sort_keys=True).encode(),
            "baseline.json": json.dumps(baseline, indent=1, sort_keys=True).encode(),
        }
        for name, data in files.items():
            (work / name).write_bytes(data)
        info = {
            "kaizen_edge_bundle": BUNDLE_FORMAT,
            "name": manifest.name,
            "version": manifest.version,
            "framework": manifest.framework,
            "artifact_sha256": manifest.artifact_sha256,
            "source_onnx_sha256": sha256_bytes(source.read_bytes()),
            "quantization": {"method": "onnxruntime.quantization.quantize_dynamic", "weight_type": "QInt8",
                             "tensors": quantised} if quantise else None,
            "parity": parity.as_dict(),
            "tensor_input": manifest.tensor_input.model_dump(mode="json") if manifest.tensor_input else None,
            "files": {
                name: sha256_bytes((work / name).read_bytes())
                for name in ("model.onnx", "schema.json", "baseline.json")
            },
        }
        (work / "bundle.json").write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
        if out.exists():
            shutil.rmtree(out)
        work.rename(out)
    return info
