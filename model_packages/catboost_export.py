"""CatBoost models as ONNX packages: exported with CatBoost's own `save_model(format="onnx")`
(no pickle), checked against the model's own predictions on every training row.

CatBoost's classifier graph ends in a ZipMap (a sequence of maps) beside the label; Kaizen keeps
the plain `[N, K]` probability tensor instead, so the runtime answers `output.labels[argmax]` and the
probabilities. CatBoost evaluates float32 features, so parity is labels exactly and numbers within
1e-6 + 1e-6 x |value| (one float32 rounding; compile.py's tree tolerance)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from model_packages.compile import PARITY_TOLERANCE, TREE_RELATIVE_TOLERANCE
from model_packages.errors import PackageError


def is_catboost(model: Any) -> bool:
    return type(model).__module__.split(".", 1)[0] == "catboost"


def check_exportable(model: Any) -> None:
    """CatBoost's ONNX export takes numeric features only."""
    if model.get_cat_feature_indices():
        raise PackageError("CatBoost models with categorical features cannot be exported to ONNX by CatBoost "
                           "(its ONNX export takes numeric features only); encode them before training")


def is_classifier(model: Any) -> bool:
    return type(model).__name__ == "CatBoostClassifier"


def _declare_column_output(graph: Any) -> None:
    """CatBoost declares a regressor's output [N] and returns [N, 1]: declare what it returns."""
    from onnx import TensorProto, helper

    name = graph.graph.output[0].name
    graph.graph.output.pop()
    graph.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", 1]))


def _probabilities_only(graph: Any) -> None:
    """Drop the ZipMap and the label output: the graph's one output is the probability tensor."""
    from onnx import TensorProto, helper

    zipmaps = [n for n in graph.graph.node if n.op_type == "ZipMap"]
    if not zipmaps:
        return
    tensor = zipmaps[0].input[0]
    graph.graph.node.remove(zipmaps[0])
    while graph.graph.output:
        graph.graph.output.pop()
    graph.graph.output.append(helper.make_tensor_value_info(tensor, TensorProto.FLOAT, ["N", None]))


def catboost_to_onnx(model: Any, x: np.ndarray) -> tuple[bytes, float]:
    """ONNX bytes of a fitted CatBoostClassifier/Regressor and the largest difference from the
    model's own answers on `x`; PackageError when it cannot be exported or does not match."""
    import onnx
    import onnxruntime as ort

    check_exportable(model)
    classifier = is_classifier(model)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        try:
            model.save_model(str(path), format="onnx")
        except Exception as error:  # CatBoost raises CatBoostError for models it cannot export
            raise PackageError(f"CatBoost cannot export this model to ONNX: {error}") from None
        graph = onnx.load(str(path))
    if classifier:
        _probabilities_only(graph)
    elif len(graph.graph.output) == 1:
        _declare_column_output(graph)
    data = graph.SerializeToString()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = np.asarray(session.run(None, {session.get_inputs()[0].name: x.astype(np.float32)})[0], np.float64)
    if classifier:
        want = np.asarray(model.predict_proba(x), np.float64)
        labels = np.asarray(model.classes_)[np.argmax(got, axis=1)]
        if [str(v) for v in labels] != [str(v) for v in np.asarray(model.predict(x)).reshape(-1)]:
            raise PackageError("CatBoost's ONNX export predicts other labels than the model on the training rows")
    else:
        want = np.asarray(model.predict(x), np.float64).reshape(-1)
        got = got.reshape(-1)
    diff = np.abs(got - want)
    if not np.all(diff <= PARITY_TOLERANCE + TREE_RELATIVE_TOLERANCE * np.abs(want)):
        raise PackageError(f"CatBoost's ONNX export differs from the model by up to {diff.max():.3g} "
                           "on the training rows, more than the parity tolerance")
    return data, float(diff.max())
