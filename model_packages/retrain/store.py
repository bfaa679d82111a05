"""Step outputs on disk, in safe formats only (never pickle): JSON, NumPy `.npy` without object
arrays, Parquet for DataFrames, skops for estimators (loaded through the package allow-list),
directories (a model package), and tuples of these."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from model_packages.errors import KaizenError


class StoreError(KaizenError):
    """A step returned a value the store cannot keep safely, or a cached output is unreadable."""


def save(value: Any, where: Path) -> None:
    """Write `value` under the directory `where` (created; must not exist)."""
    where.mkdir(parents=True)
    _save(value, where / "value")


def _save(value: Any, stem: Path) -> None:
    import pandas as pd

    if isinstance(value, tuple):
        stem.mkdir()
        (stem / "tuple").write_text(str(len(value)))
        for i, item in enumerate(value):
            _save(item, stem / str(i))
    elif isinstance(value, Path) and value.is_dir():
        shutil.copytree(value, stem.with_suffix(".dir"))
    elif isinstance(value, pd.DataFrame):
        value.to_parquet(stem.with_suffix(".parquet"))
    elif isinstance(value, pd.Series):
        value.to_frame(name=str(value.name or "value")).to_parquet(stem.with_suffix(".series.parquet"))
    elif isinstance(value, np.ndarray):
        if value.dtype == object:
            _save(value.tolist(), stem.with_suffix(".objarray"))
        else:
            np.save(stem.with_suffix(".npy"), value, allow_pickle=False)
    elif value is None or isinstance(value, bool | int | float | str | list | dict):
        try:
            stem.with_suffix(".json").write_text(json.dumps(value, sort_keys=True))
        except TypeError as err:
            raise StoreError(f"step output is not JSON-serialisable: {err}") from None
    elif hasattr(value, "fit") or hasattr(value, "predict"):
        from model_packages.loading import import_skops_io

        import_skops_io().dump(value, stem.with_suffix(".skops"))
    else:
        raise StoreError(f"a step returned a {type(value).__name__}: return arrays, DataFrames, JSON values, "
                         "estimators, a package directory or tuples of these")


def load(where: Path) -> Any:
    found = sorted(p for p in where.iterdir() if p.name.startswith("value"))
    if len(found) != 1:
        raise StoreError(f"{where}: no cached output")
    return _load(found[0])


def _load(path: Path) -> Any:
    import pandas as pd

    name = path.name
    if path.is_dir() and (path / "tuple").is_file():
        return tuple(_load(next(p for p in path.iterdir() if p.name.split(".")[0] == str(i)))
                     for i in range(int((path / "tuple").read_text())))
    if name.endswith(".dir"):
        return path
    if name.endswith(".series.parquet"):
        return pd.read_parquet(path).iloc[:, 0]
    if name.endswith(".parquet"):
        return pd.read_parquet(path)
    if name.endswith(".npy"):
        return np.load(path, allow_pickle=False)
    if name.endswith(".objarray.json"):
        return np.array(json.loads(path.read_text()), dtype=object)
    if name.endswith(".json"):
        return json.loads(path.read_text())
    if name.endswith(".skops"):
        from model_packages.loading import load_estimator

        return load_estimator(path, "skops", trusted=False)
    raise StoreError(f"{path}: unknown cached output")
