"""Compile a fitted model to an ONNX serving artifact and check it on every training row.

Tree ensembles (scikit-learn's forests and boosting, XGBoost, LightGBM) become ONNX-ML
`TreeEnsemble*` nodes that onnxruntime evaluates in compiled code. `compile_for_serving` never
raises for a model it cannot compile: it returns the reason, which `create_package` prints and
records in the manifest (`compilation.reason`), and the runtime then serves the source artifact.

Precision: skl2onnx and onnxmltools write tree thresholds as float32 attributes (ai.onnx.ml
opset 1), which moves rows that sit near a split to the other branch. For scikit-learn trees
Kaizen writes opset-3 nodes with float64 thresholds and leaf values (`*_as_tensor`) instead, and
reproduces scikit-learn's comparison exactly: `DecisionTree*`, forests and `GradientBoosting*`
cast X to float32 before comparing with a float64 threshold (so the graph rounds the input
through float32 first), `HistGradientBoosting*` compares float64 with float64. Opset-3 nodes still
output float32, so probabilities and regression values are rounded to float32 once at the end.
XGBoost evaluates in float32 itself, so its float32 graph is its own precision; LightGBM
thresholds are float64 in LightGBM and float32 in onnxmltools' graph (checked by the parity test).

DataFrame pipelines with string columns (a ColumnTransformer with OneHotEncoder on strings, a
scaler/imputer on numbers) compile to a graph with one input per column, named like the column:
a string tensor for a string categorical, float64 for the others (`frame_input_types`). The
runtime feeds it column by column (`loading.column_feed`; a missing string is the empty string,
which OneHotEncoder(handle_unknown="ignore") treats as unseen, like scikit-learn treats NaN when
it saw none in training). These are checked on the training rows plus rows with an unseen category
and rows with a missing value per column the schema lets through.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from model_packages.reproducible import deterministic_onnx

#: Absolute tolerance for numbers a float64 graph computes (linear models, scalers).
PARITY_TOLERANCE = 1e-6
#: Relative tolerance for tree ensembles, whose ONNX-ML nodes output float32: one rounding to
#: float32 is at most 2**-24 (6e-8) relative; 1e-6 leaves room for the few float32 operations
#: after the trees (sigmoid/softmax of the summed scores) and still catches any row sent down a
#: different branch (that moves a value by a whole leaf, orders of magnitude more).
TREE_RELATIVE_TOLERANCE = 1e-6

_TREE_OPS = ("TreeEnsembleClassifier", "TreeEnsembleRegressor")
_DOUBLE_ATTRS = ("nodes_values", "nodes_hitrates", "class_weights", "target_weights", "base_values")
_FLOAT32_INPUT_TREES = (
    "DecisionTreeClassifier", "DecisionTreeRegressor", "ExtraTreeClassifier", "ExtraTreeRegressor",
    "RandomForestClassifier", "RandomForestRegressor", "ExtraTreesClassifier", "ExtraTreesRegressor",
    "GradientBoostingClassifier", "GradientBoostingRegressor",
)
_DOUBLE_TREES = (*_FLOAT32_INPUT_TREES, "HistGradientBoostingClassifier", "HistGradientBoostingRegressor")


@dataclass(frozen=True)
class Compiled:
    """The outcome of a compilation: the ONNX bytes, or the reason there are none."""

    onnx: bytes | None
    reason: str | None = None
    compiler: str | None = None
    max_abs_diff: float = 0.0
    label_index: bool = False  # the graph's label output indexes output.labels
    column_inputs: bool = False  # one graph input per feature (DataFrame pipelines)
    parity_rows: int = 0  # rows checked (0: the training rows)


class _DoubleTreeContainer:
    """Wraps skl2onnx's container while one tree estimator is converted: tree nodes become
    opset-3 nodes with float64 attributes, followed by a Cast to the declared output type."""

    def __init__(self, container: Any, float32_input: bool) -> None:
        self._container = container
        self._float32_input = float32_input

    def __getattr__(self, name: str) -> Any:
        return getattr(self._container, name)

    def add_node(self, op_type: str, inputs: Any, outputs: Any, op_domain: str = "",
                 op_version: int | None = None, **attrs: Any) -> Any:
        if op_domain != "ai.onnx.ml" or op_type not in _TREE_OPS:
            return self._container.add_node(op_type, inputs, outputs, op_domain=op_domain,
                                            op_version=op_version, **attrs)
        from onnx import TensorProto, numpy_helper

        inputs = [inputs] if isinstance(inputs, str) else list(inputs)
        outputs = [outputs] if isinstance(outputs, str) else list(outputs)
        for key in _DOUBLE_ATTRS:
            value = attrs.pop(key, None)
            if value is not None:
                attrs[f"{key}_as_tensor"] = numpy_helper.from_array(np.asarray(value, np.float64).ravel(), key)
        if self._float32_input:  # scikit-learn's trees compare float32(X) with float64 thresholds
            as_float, as_double = inputs[0] + "_f32", inputs[0] + "_f32_f64"
            self._container.add_node("Cast", [inputs[0]], [as_float], to=TensorProto.FLOAT,
                                     name=as_float + "_cast")
            self._container.add_node("Cast", [as_float], [as_double], to=TensorProto.DOUBLE,
                                     name=as_double + "_cast")
            inputs = [as_double, *inputs[1:]]
        first = 1 if op_type == "TreeEnsembleClassifier" else 0  # the label output keeps its type
        raw = [name if i < first else f"{name}_f32out" for i, name in enumerate(outputs)]
        self._container.add_node(op_type, inputs, raw, op_domain=op_domain, op_version=3, **attrs)
        for final, produced in zip(outputs[first:], raw[first:], strict=True):
            self._container.add_node("Cast", [produced], [final], to=TensorProto.DOUBLE,
                                     name=produced + "_cast")
        return None


@contextlib.contextmanager
def _raw_sklearn_thresholds() -> Iterator[None]:
    """skl2onnx moves each threshold so that a float32 comparison matches scikit-learn; with
    float64 thresholds and the float32 round trip of the input, the original threshold is exact."""
    from skl2onnx.common import tree_ensemble

    original = tree_ensemble.sklearn_threshold
    tree_ensemble.sklearn_threshold = lambda dy, dtype, mode: np.float64(dy)
    try:
        yield
    finally:
        tree_ensemble.sklearn_threshold = original


def _fix_output_casts(model: Any) -> None:
    """Our Casts target float64; where skl2onnx declared the graph output float32, match it."""
    from onnx import TensorProto

    declared = {o.name: o.type.tensor_type.elem_type for o in model.graph.output}
    for node in model.graph.node:
        if node.op_type == "Cast" and node.input[0].endswith("_f32out") and node.output[0] in declared:
            for attribute in node.attribute:
                if attribute.name == "to":
                    attribute.i = declared[node.output[0]] or TensorProto.DOUBLE


def _tree_estimators(model: Any) -> list[Any]:
    """Every estimator inside `model` (pipelines, column transformers) whose class is a tree."""
    found: list[Any] = []
    stack = [model]
    while stack:
        item = stack.pop()
        if type(item).__name__ in _DOUBLE_TREES:
            found.append(item)
        for attribute in ("steps", "transformers_"):
            for part in getattr(item, attribute, None) or []:
                stack.append(part[1])
    return found


def _double_imputer(scope: Any, operator: Any, container: Any) -> Any:
    """SimpleImputer on float64 input (onnxruntime's Imputer takes only float32 and int64):
    Where(IsNaN(X), statistics_, X), with the statistics in float64 as scikit-learn has them."""
    from onnx import TensorProto
    from skl2onnx.common.data_types import DoubleTensorType
    from skl2onnx.operator_converters.common import concatenate_variables
    from skl2onnx.operator_converters.imputer_op import convert_sklearn_imputer

    imputer = operator.raw_operator
    missing = imputer.missing_values
    if not isinstance(operator.inputs[0].type, DoubleTensorType):
        return convert_sklearn_imputer(scope, operator, container)
    if not (isinstance(missing, float) and missing != missing) or imputer.add_indicator:
        raise NotImplementedError(f"SimpleImputer(missing_values={missing!r}, add_indicator="
                                  f"{imputer.add_indicator}) on float64 input")
    stats = np.asarray(imputer.statistics_, np.float64).reshape(1, -1)
    if np.isnan(stats).any():  # scikit-learn drops columns that were empty in training
        raise NotImplementedError("SimpleImputer with a column that was empty in training")
    x = concatenate_variables(scope, operator.inputs, container)
    fill, isnan = scope.get_unique_variable_name("fill"), scope.get_unique_variable_name("isnan")
    container.add_initializer(fill, TensorProto.DOUBLE, list(stats.shape), stats.ravel().tolist())
    container.add_node("IsNaN", [x], [isnan], name=scope.get_unique_operator_name("IsNaN"))
    container.add_node("Where", [isnan, fill, x], [operator.outputs[0].full_name],
                       name=scope.get_unique_operator_name("Where"))
    return None


def frame_input_types(specs: Any) -> list[tuple[str, Any]]:
    """One skl2onnx input per feature: a string tensor for string categoricals, float64 else."""
    from skl2onnx.common.data_types import DoubleTensorType, StringTensorType

    return [(s.name, StringTensorType([None, 1]) if s.dtype == "categorical" and not s.numeric_categories
             else DoubleTensorType([None, 1])) for s in specs]


def sklearn_to_onnx(model: Any, n_features: int, double: bool = False,
                    initial_types: list[tuple[str, Any]] | None = None) -> bytes:
    """Convert a fitted scikit-learn estimator to ONNX (plain probability tensor, no zipmap).

    `double=True` keeps float64 inputs and arithmetic where the converters allow it: linear
    models and scalers compute what scikit-learn computes, tree ensembles use float64
    thresholds (see the module docstring). `initial_types` replaces the one matrix input
    (`frame_input_types` for DataFrame pipelines)."""
    from skl2onnx import convert_sklearn
    from skl2onnx._supported_operators import sklearn_operator_name_map
    from skl2onnx.common._registration import get_converter
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    options = {id(model): {"zipmap": False}} if hasattr(model, "predict_proba") else None
    tensor = DoubleTensorType if double else FloatTensorType
    if initial_types is None:
        initial_types = [("input", tensor([None, n_features]))]
    custom: dict[Any, Any] = {}
    trees = False
    if double:
        from sklearn.impute import SimpleImputer

        custom[SimpleImputer] = _double_imputer
        for estimator in _tree_estimators(model):
            kind = type(estimator)
            registered = get_converter(sklearn_operator_name_map[kind])
            converter = getattr(registered, "_fct", registered)  # the function behind the registration
            float32_input = kind.__name__ in _FLOAT32_INPUT_TREES
            # Forest converters keep float64 attributes only when told the node is opset 3.
            extra = {"op_version": 3} if "op_version" in inspect.signature(converter).parameters else {}

            def convert(scope: Any, operator: Any, container: Any, _c: Any = converter,
                        _f: bool = float32_input, _x: dict[str, int] = extra) -> Any:
                return _c(scope, operator, _DoubleTreeContainer(container, _f), **_x)

            custom[kind] = convert
            trees = True
    with _raw_sklearn_thresholds() if trees else contextlib.nullcontext():
        onx: Any = convert_sklearn(model, initial_types=initial_types, options=options,
                                   target_opset={"": 17, "ai.onnx.ml": 3}, custom_conversion_functions=custom)
    if trees:
        _fix_output_casts(onx)
    return deterministic_onnx(onx).SerializeToString(deterministic=True)


def _booster_to_onnx(model: Any, framework: str, n_features: int) -> bytes:
    """XGBoost / LightGBM (sklearn API or Booster) to ONNX with onnxmltools, float32 input."""
    from onnxmltools.convert.common.data_types import FloatTensorType

    initial_types: Any = [("input", FloatTensorType([None, n_features]))]
    if framework == "xgboost":
        from onnxmltools import convert_xgboost

        onx: Any = convert_xgboost(model, initial_types=initial_types, target_opset=15)
    else:
        from onnxmltools import convert_lightgbm

        onx = convert_lightgbm(model, initial_types=initial_types, target_opset=15, zipmap=False)
    return deterministic_onnx(onx).SerializeToString(deterministic=True)


def _first_error(message: str) -> str:
    line = message.strip().splitlines()[0] if message.strip() else "no message"
    return line[:300]


def _within(got: np.ndarray, want: np.ndarray, relative: bool) -> tuple[bool, float]:
    diff = np.abs(got - want)
    worst = float(diff.max()) if diff.size else 0.0
    if not relative:
        return worst <= PARITY_TOLERANCE, worst
    ok = bool(np.all(diff <= PARITY_TOLERANCE + TREE_RELATIVE_TOLERANCE * np.abs(want)))
    return ok, worst


def compile_for_serving(model: Any, matrix: np.ndarray, task: str, framework: str,
                        reference: Any, specs: Any = None) -> Compiled:
    """Compile `model` to ONNX and check it on every row of `matrix` against `reference`,
    the source model's own answers: `(labels, probabilities or None)` or `(values, None)`.
    With `specs` (the manifest's inputs), the graph takes one input per column and `matrix` is
    the runtime's validated object matrix (DataFrame pipelines with string columns)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return Compiled(None, "onnxruntime is not installed (install kaizen-ml[onnx])")
    trees = framework in ("xgboost", "lightgbm") or bool(_tree_estimators(model))
    try:
        if framework == "sklearn":
            compiler = "skl2onnx (float64 trees)" if trees else "skl2onnx (float64)"
            columns = frame_input_types(specs) if specs is not None else None
            if columns is not None:
                compiler += ", one input per column"
            onnx_bytes = sklearn_to_onnx(model, matrix.shape[1], double=True, initial_types=columns)
        else:
            compiler = "onnxmltools (float32)"
            onnx_bytes = _booster_to_onnx(model, framework, matrix.shape[1])
    except Exception as error:  # converters raise many types for unsupported estimators
        return Compiled(None, f"{type(model).__name__} cannot be converted to ONNX: "
                              f"{type(error).__name__}: {_first_error(str(error))}")
    try:
        session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
        if specs is not None:
            from model_packages.loading import column_feed

            outputs = session.run(None, column_feed(session, [s.name for s in specs])(matrix))
        else:
            feed = session.get_inputs()[0]
            dtype = np.float32 if feed.type == "tensor(float)" else np.float64
            outputs = session.run(None, {feed.name: matrix.astype(dtype)})
    except Exception as error:  # onnxruntime raises untyped errors for graphs it rejects
        return Compiled(None, f"onnxruntime cannot run the converted {type(model).__name__}: "
                              f"{_first_error(str(error))}")
    want, want_proba = reference
    rows = matrix.shape[0]
    by_column = specs is not None
    checked = "checked rows (training rows, unseen categories, missing values)" if by_column else "training rows"
    if task == "classification":
        got = np.asarray(outputs[0]).reshape(-1)
        label_index = framework != "sklearn"
        expected = np.asarray(want).reshape(-1)
        wrong = np.flatnonzero(np.asarray([str(a) != str(b) for a, b in zip(got, expected, strict=True)]))
        if wrong.size:
            return Compiled(None, f"compiled labels differ from {type(model).__name__}'s on {wrong.size} of "
                                  f"{rows} {checked} (first: row {int(wrong[0])})")
        if want_proba is None or len(outputs) < 2:
            return Compiled(onnx_bytes, None, compiler, 0.0, label_index, by_column, rows if by_column else 0)
        proba = np.asarray(outputs[1], dtype=np.float64).reshape(np.shape(want_proba))
        ok, worst = _within(proba, np.asarray(want_proba, np.float64), trees)
    else:
        label_index = False
        values = np.asarray(outputs[0], dtype=np.float64).reshape(-1)
        ok, worst = _within(values, np.asarray(want, np.float64).reshape(-1), trees)
    if not ok:
        return Compiled(None, f"compiled numbers differ from {type(model).__name__}'s by up to {worst:.3g} "
                              f"on the {checked}, more than the parity tolerance")
    return Compiled(onnx_bytes, None, compiler, worst, label_index, by_column, rows if by_column else 0)
