"""Tiny deep-learning ONNX models built with onnx.helper (no torch, no hub downloads)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CLASSES = ["cat", "dog", "bird"]


def image_cnn(seed: int = 0) -> bytes:
    """Conv(3->4, 3x3, pad 1) -> Relu -> GlobalAveragePool -> Flatten -> Gemm(4->3) -> Softmax,
    input `image` FP32 [batch, 3, 8, 8], output `probabilities` [batch, 3]."""
    rng = np.random.default_rng(seed)
    weights = [
        numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "conv_w"),
        numpy_helper.from_array(rng.normal(size=4).astype(np.float32), "conv_b"),
        numpy_helper.from_array(rng.normal(size=(4, 3)).astype(np.float32), "fc_w"),
        numpy_helper.from_array(rng.normal(size=3).astype(np.float32), "fc_b"),
    ]
    nodes = [
        helper.make_node("Conv", ["image", "conv_w", "conv_b"], ["conv"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["pool"]),
        helper.make_node("Flatten", ["pool"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny-cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 3])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def sequence_regressor(seed: int = 0) -> bytes:
    """Token ids INT64 [batch, time] (time dynamic) -> embedding -> mean over time -> 2 values."""
    rng = np.random.default_rng(seed)
    weights = [
        numpy_helper.from_array(rng.normal(size=(20, 5)).astype(np.float32), "embedding"),
        numpy_helper.from_array(rng.normal(size=(5, 2)).astype(np.float32), "head_w"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axes"),
    ]
    nodes = [
        helper.make_node("Gather", ["embedding", "tokens"], ["embedded"], axis=0),
        helper.make_node("ReduceMean", ["embedded", "axes"], ["mean"], keepdims=0),
        helper.make_node("MatMul", ["mean", "head_w"], ["values"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny-sequence",
        [helper.make_tensor_value_info("tokens", TensorProto.INT64, ["batch", "time"])],
        [helper.make_tensor_value_info("values", TensorProto.FLOAT, ["batch", 2])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()
