"""Turn request rows into a validated 2-D array, with errors that name the row and the feature."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from model_packages.errors import RequestError
from model_packages.manifest import FeatureSpec, Manifest

_NUMBER = (int, float)
WITHHELD = "(value withheld: sensitive feature)"


class InputSchema:
    """The manifest's input schema, compiled into arrays for vectorised checks.

    Public: `specs`, `names`, `index` (name -> column), `width`, `string_cols` (column -> categories) and
    `matrix`/`check`; the compiled arrays (`_mins`, `_int_cols`, ...) are the hot path's own.
    """

    def __init__(self, manifest: Manifest) -> None:
        specs = manifest.inputs
        self.specs: list[FeatureSpec] = list(specs)
        self.names = [s.name for s in specs]
        self.index = {name: i for i, name in enumerate(self.names)}
        self.width = len(specs)
        self._all_cols = list(range(self.width))
        self._all_position = {c: c for c in self._all_cols}
        self._mins = np.array([-np.inf if s.minimum is None else s.minimum for s in specs])
        self._maxs = np.array([np.inf if s.maximum is None else s.maximum for s in specs])
        self._has_bounds = bool(np.isfinite(self._mins).any() or np.isfinite(self._maxs).any())
        self._nan_ok = np.array([s.allow_nan or s.accepts_null for s in specs])
        self._int_cols = [i for i, s in enumerate(specs) if s.dtype == "integer"]
        self._bool_cols = [i for i, s in enumerate(specs) if s.dtype == "boolean"]
        self._cat_cols = {
            i: np.array(s.categories, dtype=np.float64)
            for i, s in enumerate(specs)
            if s.dtype == "categorical" and s.numeric_categories
        }
        self.string_cols = {
            i: {str(c) for c in s.categories or []}
            for i, s in enumerate(specs)
            if s.dtype == "categorical" and not s.numeric_categories
        }
        #: string columns whose unseen categories the model accepts
        self._open_cols = {i for i in self.string_cols if specs[i].allow_unknown}
        # What a null becomes: the default of an optional feature, else missing (NaN).
        self._fill = [
            (s.default if s.default is not None and not s.required else math.nan) if s.accepts_null else None
            for s in specs
        ]

    # -- rows to matrix -------------------------------------------------------------------------
    def matrix(self, rows: Any, field: str = "instances") -> np.ndarray:
        """Validate `rows` (lists in feature order, or objects keyed by feature name)."""
        if not isinstance(rows, list) or not rows:
            raise RequestError(f"{field} must be a non-empty list of rows", field=field)
        first = rows[0]
        if isinstance(first, dict):
            rows = [self._dict_row(row, field, i) for i, row in enumerate(rows)]
        elif not isinstance(first, list):
            if self.width == 1 and all(not isinstance(r, list | dict) for r in rows):
                rows = [[r] for r in rows]
            else:
                raise RequestError(
                    f"{field}[0] must be a list of {self.width} values or an object keyed by feature "
                    f"name ({', '.join(self.names)})",
                    field=f"{field}[0]",
                )
        if self.string_cols:
            return self._slow(rows, field)
        try:
            array = np.array(rows)
        except ValueError:
            return self._slow(rows, field)
        if array.dtype.kind not in "fiub" or array.ndim != 2 or array.shape[1] != self.width:
            return self._slow(rows, field)
        return self.check(array.astype(np.float64, copy=False), field)

    def _dict_row(self, row: Any, field: str, i: int) -> list[Any]:
        if not isinstance(row, dict):
            raise RequestError(f"{field}[{i}] must be an object like {field}[0]", field=f"{field}[{i}]")
        unknown = [k for k in row if k not in self.index]
        if unknown:
            raise RequestError(
                f"{field}[{i}]: unknown feature {unknown[0]!r}; expected {', '.join(self.names)}",
                field=f"{field}[{i}].{unknown[0]}",
            )
        values: list[Any] = []
        for spec in self.specs:
            if spec.name in row:
                values.append(row[spec.name])
            elif spec.required:
                raise RequestError(
                    f"{field}[{i}]: missing required feature {spec.name!r}", field=f"{field}[{i}].{spec.name}"
                )
            else:
                values.append(None)
        return values

    def _slow(self, rows: list[Any], field: str) -> np.ndarray:
        """Row-by-row conversion: fills optional features and finds the exact bad value."""
        out: list[list[Any]] = []
        for i, row in enumerate(rows):
            where = f"{field}[{i}]"
            if not isinstance(row, list):
                raise RequestError(f"{where} must be a list of {self.width} values", field=where)
            if len(row) != self.width:
                raise RequestError(
                    f"{where} has {len(row)} values; the model takes {self.width} features "
                    f"({', '.join(self.names)})",
                    field=where,
                )
            values: list[Any] = []
            for j, value in enumerate(row):
                spec = self.specs[j]
                name = f"{where}.{spec.name}"
                if value is None:
                    if self._fill[j] is None:
                        raise RequestError(f"{name}: missing required feature (null)", field=name)
                    values.append(self._fill[j])
                elif j in self.string_cols:
                    if isinstance(value, list | dict):
                        raise RequestError(f"{name}: expected a category (string), got {type(value).__name__}",
                                           field=name)
                    if j not in self._open_cols and str(value) not in self.string_cols[j]:
                        if spec.sensitive:
                            raise RequestError(f"{name}: the value is not one of the feature's categories "
                                               "(sensitive feature: value withheld)", field=name)
                        raise RequestError(
                            f"{name}: {value!r} is not one of the categories "
                            f"{sorted(self.string_cols[j])}",
                            field=name,
                        )
                    values.append(str(value))
                elif isinstance(value, _NUMBER):
                    try:
                        values.append(float(value))
                    except OverflowError:
                        shown = WITHHELD if spec.sensitive else _short(value)
                        raise RequestError(f"{name}: {shown} is too large", field=name) from None
                else:
                    shown = WITHHELD if spec.sensitive else _short(value)
                    raise RequestError(
                        f"{name}: expected a number for {spec.dtype} feature, got {type(value).__name__} "
                        f"{shown}",
                        field=name,
                    )
            out.append(values)
        if self.string_cols:
            array = np.array(out, dtype=object)
            numeric = [j for j in range(self.width) if j not in self.string_cols]
            if numeric:
                self.check(array[:, numeric].astype(np.float64), field, columns=numeric)
            return array
        return self.check(np.array(out, dtype=np.float64), field)

    # -- checks ---------------------------------------------------------------------------------
    def check(self, array: np.ndarray, field: str, columns: list[int] | None = None) -> np.ndarray:
        """Vectorised checks of a float matrix: finiteness, ranges, integers, booleans, categories."""
        if columns is None:  # the hot path: every column, no per-request index arrays
            cols, mins, maxs, nan_ok = self._all_cols, self._mins, self._maxs, self._nan_ok
            position = self._all_position
        else:
            cols, mins, maxs, nan_ok = columns, self._mins[columns], self._maxs[columns], self._nan_ok[columns]
            position = {c: k for k, c in enumerate(columns)}
        finite = np.isfinite(array)
        if not finite.all():
            bad = ~finite & ~(np.isnan(array) & nan_ok)
            if bad.any():
                i, j = np.argwhere(bad)[0]
                raise self._value_error(field, int(i), cols[j], array[i, j], "is not allowed (not finite)")
        if self._has_bounds:
            low = array < mins
            if low.any():
                i, j = np.argwhere(low)[0]
                minimum = self._mins[cols[j]]
                raise self._value_error(field, int(i), cols[j], array[i, j], f"is below the minimum {minimum:g}")
            high = array > maxs
            if high.any():
                i, j = np.argwhere(high)[0]
                maximum = self._maxs[cols[j]]
                raise self._value_error(field, int(i), cols[j], array[i, j], f"is above the maximum {maximum:g}")
        for col in self._int_cols:
            if col in position:
                values = array[:, position[col]]
                bad_int = np.isfinite(values) & (values != np.floor(values))
                if bad_int.any():
                    i = int(np.argmax(bad_int))
                    raise self._value_error(field, i, col, values[i], "is not an integer")
        for col in self._bool_cols:
            if col in position:
                values = array[:, position[col]]
                bad_bool = (values != 0) & (values != 1) & ~np.isnan(values)
                if bad_bool.any():
                    i = int(np.argmax(bad_bool))
                    raise self._value_error(field, i, col, values[i], "is not a boolean (true/false or 0/1)")
        for col, allowed in self._cat_cols.items():
            if col in position:
                values = array[:, position[col]]
                bad_cat = ~np.isin(values, allowed) & ~np.isnan(values)
                if bad_cat.any():
                    i = int(np.argmax(bad_cat))
                    raise self._value_error(
                        field, i, col, values[i], f"is not one of the categories {allowed.tolist()}"
                    )
        return array

    def _value_error(self, field: str, row: int, col: int, value: Any, problem: str) -> RequestError:
        name = f"{field}[{row}].{self.names[col]}"
        if self.specs[col].sensitive:  # say what is wrong, never the value (nor the bound it was checked against)
            return RequestError(f"{name}: the value {problem.split(' the ')[0]} the allowed range"
                                if problem.startswith(("is below", "is above")) else f"{name}: the value {problem}",
                                field=name)
        return RequestError(f"{name}: {float(value):g} {problem}", field=name)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
