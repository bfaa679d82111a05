"""Which types an untrusted skops file may contain, decided without importing attacker-named modules.

skops' own defaults (builtins, numpy dtypes and ufuncs, scipy ufuncs, a few sklearn internals) are
applied by `skops.io.get_untrusted_types`. On top of them Kaizen trusts:

- a public scikit-learn estimator: a `BaseEstimator` subclass exported by one of the public
  subpackages in `SKLEARN_PUBLIC`, whose defining module and name match the file's type name
  exactly (the subpackage comes from this fixed list, never from the file);
- the reviewed helper types in `EXTRA_TRUSTED` that fitted estimators hold, each structurally
  checked after loading where a crafted value could make scikit-learn read out of bounds
  (`check_loaded`).

Anything else (`numpy.lib._datasource.DataSource`, `numpy.memmap`, test mocks, a module named for its
import side effects) needs `trusted: true`.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

#: Public scikit-learn modules whose estimators may appear in an untrusted file.
SKLEARN_PUBLIC = (
    "calibration", "cluster", "compose", "covariance", "cross_decomposition", "decomposition",
    "discriminant_analysis", "dummy", "ensemble", "feature_extraction", "feature_extraction.text",
    "feature_selection", "gaussian_process", "impute", "isotonic", "kernel_approximation", "kernel_ridge",
    "linear_model", "manifold", "mixture", "multiclass", "multioutput", "naive_bayes", "neighbors",
    "neural_network", "pipeline", "preprocessing", "random_projection", "semi_supervised", "svm", "tree",
)

#: Non-estimator types of fitted models, reviewed one by one (dtypes, sparse containers, tree
#: structures, column-transformer bookkeeping). Neighbour indexes (KDTree, BallTree) are not here: their arrays are
#: indexed unchecked and Kaizen does not validate them, so such models need `trusted: true`.
EXTRA_TRUSTED = frozenset({
    "numpy.dtype",
    # scipy sparse containers: skops stores them as .npz data (no pickle) and rebuilds them from it.
    *(f"scipy.sparse._{fmt}.{fmt}_{kind}" for fmt in ("csr", "csc", "coo") for kind in ("matrix", "array")),
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.compose._column_transformer._RemainderColsList",
})


def is_trusted(name: str) -> bool:
    """Whether `name` (module.Class as written in the file) may load without `trusted: true`."""
    if name in EXTRA_TRUSTED:
        return True
    module, _, cls = name.rpartition(".")
    if not module.startswith("sklearn.") or not cls or cls.startswith("_"):
        return False
    public = module.split(".")[1]
    candidates = [p for p in SKLEARN_PUBLIC if p == public or p.startswith(public + ".")]
    for subpackage in candidates:
        namespace = importlib.import_module(f"sklearn.{subpackage}")  # from the fixed list only
        obj = getattr(namespace, cls, None)
        if isinstance(obj, type) and _is_estimator_class(obj) and f"{obj.__module__}.{obj.__qualname__}" == name:
            return True
    return False


def _is_estimator_class(obj: type) -> bool:
    from sklearn.base import BaseEstimator

    if not issubclass(obj, BaseEstimator):
        return False
    # A finalizer runs code when the object dies; no estimator needs one.
    return not any("__del__" in vars(klass) for klass in obj.__mro__ if klass is not object)


def check_loaded(obj: Any, n_features: int | None = None, _seen: set[int] | None = None) -> str | None:
    """Structural checks of the tree types scikit-learn indexes without bounds checks.

    Returns a description of the first problem, or None. Walks estimators, lists and dicts."""
    seen = _seen if _seen is not None else set()
    if id(obj) in seen:
        return None
    seen.add(id(obj))
    name = f"{type(obj).__module__}.{type(obj).__qualname__}"
    if name == "sklearn.tree._tree.Tree":
        return _check_tree(obj)
    if name == "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor":
        return _check_tree_predictor(obj, n_features)
    width = getattr(obj, "n_features_in_", None)
    if isinstance(width, int | np.integer):
        n_features = int(width)
    if isinstance(obj, dict):
        children: list[Any] = list(obj.values())
    elif isinstance(obj, list | tuple):
        children = list(obj)
    elif isinstance(obj, np.ndarray) and obj.dtype == object:
        children = list(obj.reshape(-1))
    elif hasattr(obj, "__dict__") and type(obj).__module__.startswith("sklearn."):
        children = list(vars(obj).values())
    else:
        return None
    for child in children:
        problem = check_loaded(child, n_features, seen)
        if problem:
            return problem
    return None


def _check_tree(tree: Any) -> str | None:
    count = int(tree.node_count)
    left, right = np.asarray(tree.children_left), np.asarray(tree.children_right)
    feature = np.asarray(tree.feature)
    leaf = left == -1
    if left.shape != (count,) or right.shape != (count,) or feature.shape != (count,):
        return "a decision tree's node arrays do not match its node count"
    inner = ~leaf
    if ((left[inner] <= 0) | (left[inner] >= count) | (right[inner] <= 0) | (right[inner] >= count)).any():
        return "a decision tree has child indices outside the tree"
    if ((feature[inner] < 0) | (feature[inner] >= int(tree.n_features))).any():
        return "a decision tree splits on a feature the model does not have"
    if np.asarray(tree.value).shape[0] != count:
        return "a decision tree's leaf values do not match its node count"
    return None


def _check_tree_predictor(predictor: Any, n_features: int | None) -> str | None:
    nodes = predictor.nodes
    count = nodes.shape[0]
    inner = nodes["is_leaf"] == 0
    left, right = nodes["left"][inner].astype(np.int64), nodes["right"][inner].astype(np.int64)
    if ((left <= 0) | (left >= count) | (right <= 0) | (right >= count)).any():
        return "a histogram gradient boosting tree has child indices outside the tree"
    feature = nodes["feature_idx"][inner].astype(np.int64)
    if n_features is None or ((feature < 0) | (feature >= n_features)).any():
        return "a histogram gradient boosting tree splits on a feature the model does not have"
    bitsets = np.asarray(predictor.raw_left_cat_bitsets)
    categorical = inner & (nodes["is_categorical"] != 0)
    if categorical.any() and (nodes["bitset_idx"][categorical].astype(np.int64) >= bitsets.shape[0]).any():
        return "a histogram gradient boosting tree points at a category bitset it does not have"
    return None
